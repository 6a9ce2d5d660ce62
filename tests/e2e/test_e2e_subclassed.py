"""Subclassed models (issue 12, item 2): --import registers the class; gradients are measured."""

import json
import subprocess
import sys
import textwrap

import keras
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
    words = " ".join(text.stdout.split())  # the terminal wraps long notes
    assert "subclassed model: diagnosed through a functional view" in words
    assert "outputs measured for 2 of its 2 tracked layers" in words


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


class Block(keras.layers.Layer):
    """A custom layer holding layers: the probe opens it."""

    def __init__(self, bias=0.0, **kwargs):
        super().__init__(**kwargs)
        self.expand = keras.layers.Dense(32, activation="relu", name="expand",
                                         bias_initializer=keras.initializers.Constant(bias))
        self.project = keras.layers.Dense(16, name="project")

    def call(self, x):
        return self.project(self.expand(x))


class Net(keras.Model):
    """A subclassed model with a custom block, a hidden sigmoid layer, a layer its call never
    runs, and an activation applied by a function (not measurable: no layer)."""

    def __init__(self, block_bias=0.0, sigmoid_std=0.05, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Dense(16, activation="tanh", name="first")
        self.block = Block(block_bias, name="block")
        self.gate = keras.layers.Dense(16, activation="sigmoid", name="gate",
                                       kernel_initializer=keras.initializers.RandomNormal(stddev=sigmoid_std))
        self.spare = keras.layers.Dense(4, name="spare")
        self.out = keras.layers.Dense(1, name="out")

    def call(self, x):
        h = self.gate(self.block(self.first(x)))
        return self.out(keras.activations.relu(h))


def _net_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    return x, (x @ rng.normal(size=(8, 1))).astype("float32")


def _diagnose_net(**kwargs):
    import keras

    from stalldoc.api import diagnose

    keras.utils.set_random_seed(0)
    model = Net(name="net", **kwargs)
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x, y = _net_data()
    return diagnose(model, x, y, steps=10)


def test_subclassed_tracked_layers_are_measured_in_call_order_and_the_rest_is_named():
    report = _diagnose_net()
    assert report.verdict == "healthy", [(f.id, f.layer) for f in report.findings]
    measured = [lf.name for lf in report.facts.layers if lf.output_std.size]
    assert measured == ["net/first", "net/block/expand", "net/block/project", "net/gate", "net/out"]
    assert [lf.name for lf in report.facts.layers if not lf.output_std.size] == ["net/spare"]
    note = next(n for n in report.facts.notes if n.startswith("subclassed model 'net'"))
    assert "5 of its 6 tracked layers" in note and "net/spare (not called)" in note
    assert "outside layers" in note  # keras.activations.relu in call() is not a layer
    first_gate = next(lf for lf in report.facts.layers if lf.name == "net/gate")
    assert float(np.median(first_gate.saturated_fraction)) < 0.1


def test_a_dead_relu_inside_a_subclassed_models_block_is_found_and_named():
    report = _diagnose_net(block_bias=-20.0)
    assert report.verdict == "stalled"
    first = report.findings[0]
    assert (first.id, first.layer) == ("dead-relu", "net/block/expand"), [(f.id, f.layer) for f in report.findings]


def test_a_saturated_sigmoid_inside_a_subclassed_model_is_found_and_named():
    report = _diagnose_net(sigmoid_std=30.0)
    found = [f for f in report.findings if f.id == "saturated-activation"]
    assert [f.layer for f in found] == ["net/gate"], [(f.id, f.layer) for f in report.findings]
    assert found[0].evidence["saturated_fraction"] > 0.5
