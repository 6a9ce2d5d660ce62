"""Subclassed models (issue 12, item 2): --import registers the class; gradients are measured."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from stalldoc.cli import main

pytestmark = pytest.mark.e2e

CLASS_FILE = textwrap.dedent('''
    import keras


    @keras.saving.register_keras_serializable(package="stalldoc_e2e")
    class TinyNet(keras.Model):
        def __init__(self, units=16, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.hidden = keras.layers.Dense(units, activation="relu", name="hidden")
            self.out = keras.layers.Dense(1, name="out")

        def call(self, x):
            return self.out(self.hidden(x))

        def get_config(self):
            return {**super().get_config(), "units": self.units}
''')

SAVE = textwrap.dedent('''
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, sys.argv[1])
    import keras, numpy as np
    from tinynet import TinyNet
    keras.utils.set_random_seed(0)
    model = TinyNet()
    model.compile(keras.optimizers.SGD(1e-7), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1))).astype("float32")
    model(x[:2])
    model.save(os.path.join(sys.argv[1], "tiny.keras"))
    np.savez(os.path.join(sys.argv[1], "tiny.npz"), x=x, y=y)
''')


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A subclassed model saved in a fresh process, so this one has never registered its class."""
    folder = tmp_path_factory.mktemp("subclassed")
    (folder / "tinynet.py").write_text(CLASS_FILE)
    subprocess.run([sys.executable, "-c", SAVE, str(folder)], check=True, capture_output=True)
    return folder


def test_without_import_one_line_names_the_class_and_the_option(saved):
    result = CliRunner().invoke(main, ["check", str(saved / "tiny.keras"), str(saved / "tiny.npz"), "-q"])
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "TinyNet" in err and "--import" in err


def test_with_import_the_subclassed_model_is_diagnosed_from_its_gradients(saved):
    result = CliRunner().invoke(main, ["check", str(saved / "tiny.keras"), str(saved / "tiny.npz"), "-q",
                                       "--format", "json", "--import", str(saved / "tinynet.py")])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == "stalled"
    first = report["findings"][0]
    assert first["id"] == "learning-rate-too-low", report["findings"]
    assert first["layer"].startswith("tiny_net/")  # variables map to the tracked sublayer
    text = CliRunner().invoke(main, ["check", str(saved / "tiny.keras"), str(saved / "tiny.npz"), "-q",
                                     "--no-confirm", "--import", str(saved / "tinynet.py")])
    assert "subclassed model: per-layer activations are not measured" in text.stdout


def test_import_errors_are_one_line(saved, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    for spec, expected in ((str(bad), "boom"), (str(tmp_path / "missing.py"), "no such file"),
                           ("no_such_module_for_stalldoc", "cannot import module")):
        result = CliRunner().invoke(main, ["check", str(saved / "tiny.keras"), str(saved / "tiny.npz"), "-q",
                                           "--import", spec])
        assert result.exit_code == 2 and expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_api_builds_an_unbuilt_subclassed_model_and_leaves_it_as_it_was(saved):
    import keras

    sys.path.insert(0, str(saved))
    try:
        from tinynet import TinyNet
    finally:
        sys.path.remove(str(saved))
    from stalldoc.api import diagnose

    keras.utils.set_random_seed(0)
    model = TinyNet(name="fresh")
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    report = diagnose(model, x, x[:, :1] * 3, steps=10)
    assert model.built
    before = [v.numpy().copy() for v in model.variables]
    assert report.verdict == "healthy", [(f.id, f.layer) for f in report.findings]
    assert any("subclassed model" in note for note in report.facts.notes)
    assert {v.layer for v in report.facts.variables} == {"fresh/hidden", "fresh/out"}
    report = diagnose(model, x, x[:, :1] * 3, steps=5)
    for a, v in zip(before, model.variables):
        np.testing.assert_array_equal(a, v.numpy())
