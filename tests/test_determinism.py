"""Same model, same data, same --seed: the same findings in the same order, word for word."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from hostile_corpus import keras_quiet

from stalldoc.cli import main

pytestmark = pytest.mark.e2e
ARGS = ["--seed", "7", "--steps", "6", "--batch-size", "16", "--format", "json", "-q"]


@pytest.fixture(scope="module")
def stalled(tmp_path_factory):
    """Unnormalized inputs into sigmoids: several findings, so the ranking has an order to keep."""
    root = tmp_path_factory.mktemp("determinism")
    keras = keras_quiet()
    keras.utils.set_random_seed(1)
    inp = keras.Input((6,))
    hidden = keras.layers.Dense(16, activation="sigmoid", name="squash")(inp)
    model = keras.Model(inp, keras.layers.Dense(4, name="out")(hidden))
    model.compile(optimizer="adam", loss="cosine_similarity")
    model.save(root / "model.keras")
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(200, 6)) * 300 + 50).astype("float32")
    y = rng.normal(size=(200, 4)).astype("float32")
    np.savez(root / "data.npz", x=x, y=y)
    np.savez_compressed(root / "data_z.npz", x=x, y=y)
    return str(root / "model.keras"), str(root / "data.npz"), str(root / "data_z.npz")


def _check(model: str, data: str, *extra: str) -> dict:
    result = CliRunner().invoke(main, ["check", model, data, *ARGS, *extra])
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)


def _summary(report: dict) -> list[tuple]:
    return [(f["id"], f["severity"], f.get("layer"), f["message"], tuple(f.get("explains", [])))
            for f in report["findings"]]


def test_same_seed_same_findings_in_process(stalled):
    model, data, _ = stalled
    first, second = _check(model, data), _check(model, data)
    assert first["findings"], "the fixture should produce findings"
    assert _summary(first) == _summary(second)
    assert first["verdict"] == second["verdict"]
    assert first["loss"]["initial"] == pytest.approx(second["loss"]["initial"], rel=1e-6)
    assert first["loss"]["final"] == pytest.approx(second["loss"]["final"], rel=1e-6)
    assert [s["detector"] for s in first["skipped"]] == [s["detector"] for s in second["skipped"]]


def test_storage_does_not_change_the_diagnosis(stalled):
    """np.savez (read in place) and np.savez_compressed (streamed) sample the same rows."""
    model, data, data_z = stalled
    assert _summary(_check(model, data)) == _summary(_check(model, data_z))


def test_same_seed_same_findings_in_a_fresh_process(stalled, tmp_path):
    """A fresh process agrees with this one; it also leaves no file in its cwd or TMPDIR
    (TensorFlow's autograph writes temporary sources there and must clean them up)."""
    model, data, _ = stalled
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmp))
    proc = subprocess.run([sys.executable, "-m", "stalldoc", "check", model, data, *ARGS],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    assert _summary(json.loads(proc.stdout)) == _summary(_check(model, data))
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == [], "stalldoc left files behind"
