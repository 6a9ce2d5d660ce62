"""tf.distribute strategies, for real on this machine: MirroredStrategy over two logical CPU
devices (the API, StallWatch, ``check --strategy mirrored``, ``run``), MultiWorkerMirroredStrategy
over two local worker processes (``run``), each diagnosis matched against the one-device one.

Two logical CPU devices must be configured before TensorFlow starts, so the in-process cases run
in a subprocess of their own (mirrored_cases.py) once per session; the assertions are here.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from stalldoc.cli import main

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Reports equal up to float error: these keys differ by nature (the strategy, wall-clock time).
UNCOMPARED = {"strategy", "replicas", "seconds", "path"}


def assert_same_diagnosis(one: dict, other: dict) -> None:
    """Same verdict, same finding ids in order, every number within float error."""
    assert other["verdict"] == one["verdict"]
    assert [f["id"] for f in other["findings"]] == [f["id"] for f in one["findings"]]
    assert [(f.get("confirmation") or {}).get("status") for f in other["findings"]] == \
        [(f.get("confirmation") or {}).get("status") for f in one["findings"]]
    _close(one, other, "report")


def _close(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict), where
        for key in a:
            if key not in UNCOMPARED:
                _close(a[key], b.get(key), f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert isinstance(b, (int, float)), where
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6), \
            f"{where}: {a} != {b}"
    elif not isinstance(a, str):  # messages hold rounded numbers; ids and verdicts are checked above
        assert a == b, f"{where}: {a!r} != {b!r}"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


# ---------------------------------------------------------------------------- MirroredStrategy in-process


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "mirrored_cases.py"), str(out)], env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "results.json") as fh:
        return json.load(fh)


@pytest.mark.e2e
def test_api_under_mirrored_matches_one_device(mirrored):
    api = mirrored["api"]
    assert api["replicas"] == 2
    one, two = api["one"], api["mirrored"]
    assert one["verdict"] == "stalled" and one["findings"][0]["id"] == "unnormalized-input"
    assert two["model"]["strategy"] == "MirroredStrategy" and two["model"]["replicas"] == 2
    assert "strategy" not in one["model"]  # one device: the JSON is as before
    assert one["loss"]["batch_size"] == two["loss"]["batch_size"] == 64  # the global batch
    assert_same_diagnosis(one, two)
    assert api["restored"]  # the user's mirrored variables are back where they were


@pytest.mark.e2e
def test_stallwatch_under_mirrored_diagnoses_and_stops(mirrored):
    watch = mirrored["stallwatch"]
    assert [[f["id"] for f in r["findings"]] for r in watch["reports"]] == [
        [f["id"] for f in mirrored["api"]["one"]["findings"]]]
    assert watch["reports"][0]["model"]["replicas"] == 2
    # Inside the user's scope the probe's own constant-predictor fit still runs (outside that scope).
    assert watch["reports"][0]["loss"]["baseline"] == pytest.approx(mirrored["api"]["one"]["loss"]["baseline"],
                                                                   rel=0.05)
    assert watch["epochs"] < 6  # stop_training=True stopped it at the plateau
    assert any("MirroredStrategy: the probe ran on 2 replicas, 32 rows per replica" in line
               for line in watch["lines"])


@pytest.mark.e2e
def test_check_strategy_mirrored(mirrored):
    check = mirrored["check"]
    assert check["exit_code"] == 1, check["stderr"]
    doc = json.loads(check["stdout"])
    assert doc["model"]["strategy"] == "MirroredStrategy" and doc["model"]["replicas"] == 2
    assert [f["id"] for f in doc["findings"]] == [f["id"] for f in mirrored["api"]["one"]["findings"]]
    assert check["note"] == "--strategy mirrored: no GPU, so MirroredStrategy over the 2 local CPU devices"


# ---------------------------------------------------------------------------- StallWatch never stops a fit


def test_stallwatch_failure_lets_training_continue(monkeypatch):
    keras = pytest.importorskip("keras")
    from stalldoc.keras import StallWatch

    def broken(*args, **kwargs):
        raise RuntimeError("boom inside stalldoc")
    monkeypatch.setattr("stalldoc.api.diagnose", broken)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    lines = []
    watch = StallWatch(patience=1, min_delta=10.0, stop_training=True, once=False, print_fn=lines.append)
    history = model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=4, verbose=0, callbacks=[watch])
    assert len(history.history["loss"]) == 4  # never stopped
    failed = [line for line in lines if "diagnosis failed" in line]
    assert failed and all(line == "StallWatch: the diagnosis failed (internal error: RuntimeError: boom inside "
                                  "stalldoc); training continues" for line in failed)


# ---------------------------------------------------------------------------- check --strategy errors


@pytest.mark.parametrize("tf_config, says", [
    (None, "TF_CONFIG is not set"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["localhost:1"]}}', "TF_CONFIG has no task"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}', "task index 3"),
])
def test_multiworker_without_a_valid_tf_config_is_exit_2(tmp_path, monkeypatch, tf_config, says):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    model, data = tmp_path / "m.keras", tmp_path / "d.npz"
    model.write_bytes(b"")
    data.write_bytes(b"")
    result = CliRunner().invoke(main, ["check", str(model), str(data), "--strategy", "multiworker", "--isolated"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stalldoc: error: --strategy multiworker: ") and says in lines[0]


def test_strategy_in_config(tmp_path):
    from stalldoc.config import ConfigError, load_config

    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.stalldoc]\nstrategy = "mirrored"\n')
    assert load_config(str(path)).strategy == "mirrored"
    path.write_text('[tool.stalldoc]\nstrategy = "tpu"\n')
    with pytest.raises(ConfigError, match="strategy: expected one of default, mirrored, multiworker"):
        load_config(str(path))


# ---------------------------------------------------------------------------- stalldoc run


# A stalled classifier (inputs x1000 into sigmoid units) built in the scope of the strategy STRATEGY
# names; MirroredStrategy gets two logical CPU devices, MultiWorker reads TF_CONFIG.
SCRIPT = textwrap.dedent('''
    import os
    import numpy as np
    import tensorflow as tf

    STRATEGY = os.environ["STRATEGY"]
    if STRATEGY == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")],
                                                  cross_device_ops=tf.distribute.ReductionToOneDevice())
    elif STRATEGY == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32") * 1000.0
    y = (x[:, :1] > 0).astype("float32")
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8,))
        hidden = keras.layers.Dense(16, activation="sigmoid")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    print("script: replicas", strategy.num_replicas_in_sync)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    print("script: after fit")
''')

RUN = ["run", "--steps", "5", "--max-steps", "5", "--no-confirm", "-q", "--isolated", "--format", "json"]


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("script") / "train.py"
    path.write_text(SCRIPT)
    return path


def run_script(script, strategy: str, tf_config: str | None = None) -> subprocess.Popen:
    env = _env()
    env["STRATEGY"] = strategy
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = tf_config
    return subprocess.Popen([sys.executable, "-m", "stalldoc", *RUN, "--", sys.executable, str(script)],
                            cwd=script.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 420) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"timed out; stderr: {err[-2000:]}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def one_device(script):
    code, out, err = finish(run_script(script, "none"))
    assert code == 1, err[-2000:]
    return json.loads(out)


@pytest.mark.e2e
def test_run_under_mirrored_matches_one_device(script, one_device):
    code, out, err = finish(run_script(script, "mirrored"))
    assert code == 1, err[-2000:]
    doc = json.loads(out)
    assert doc["model"]["strategy"] == "MirroredStrategy" and doc["model"]["replicas"] == 2
    assert one_device["findings"][0]["id"] == "unnormalized-input"
    assert_same_diagnosis(one_device, doc)
    assert "script: replicas 2" in err and "script: after fit" not in err


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.e2e
def test_run_under_multiworker_two_local_workers(script, one_device):
    hosts = [f"localhost:{port}" for port in _free_ports(2)]
    workers = [run_script(script, "multiworker", json.dumps({"cluster": {"worker": hosts},
                                                             "task": {"type": "worker", "index": i}}))
               for i in range(2)]
    (chief_code, chief_out, chief_err), (other_code, other_out, other_err) = [finish(w) for w in workers]
    # The chief prints the report and its exit code is the diagnosis'; the other worker says so and exits 0.
    assert chief_code == 1, chief_err[-2000:]
    doc = json.loads(chief_out)
    assert doc["model"]["strategy"] == "MultiWorkerMirroredStrategy" and doc["model"]["replicas"] == 2
    assert_same_diagnosis(one_device, doc)
    assert other_code == 0, other_err[-2000:]
    assert other_out == ""
    assert "stalldoc: worker 1 of train.py: diagnosed in step with the chief, which prints the report" in other_err
    assert "script: after fit" not in chief_err + other_err  # --then stop, on both


# ---------------------------------------------------------------------------- stalldoc's failures are its own


def test_a_failure_inside_stalldoc_is_not_blamed_on_the_data(monkeypatch):
    """The model and its loss run on the data, the probe fails: an internal error (the CLI says
    "internal error: ..."), never an InputError about the user's data."""
    keras = pytest.importorskip("keras")
    import stalldoc
    from stalldoc.errors import InputError

    def broken(model):
        raise TypeError("tuple indices must be integers or slices, not MirroredVariable")
    monkeypatch.setattr("stalldoc.probe.step.fresh_optimizer", broken)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(TypeError, match="MirroredVariable") as caught:
        stalldoc.diagnose(model, np.zeros((16, 2)), np.zeros((16, 1)), steps=1, max_steps=1)
    assert not isinstance(caught.value, InputError)
