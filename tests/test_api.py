"""stalldoc.diagnose on in-memory Keras models: the report, and the user's model left untouched."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

import stalldoc
from stalldoc.errors import InputError, StalldocError

FAST = dict(steps=3, max_steps=3, batch_size=32)  # a fixed horizon: the options reach the probe as given


def test_import_stalldoc_does_not_import_tensorflow():
    code = ("import stalldoc, sys; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
            "assert callable(stalldoc.diagnose); assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'diagnoze'"):
        stalldoc.diagnoze  # noqa: B018


keras = pytest.importorskip("keras")
pytestmark = pytest.mark.e2e


def data(samples=128, features=8, out=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(features, out))).astype("float32")
    return x, y


def mlp(*, dead=False, batchnorm=False):
    keras.utils.set_random_seed(1)
    layers = [keras.Input((8,), name="features"),
              keras.layers.Dense(16, activation="relu",
                                 bias_initializer=keras.initializers.Constant(-20.0 if dead else 0.0))]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization())
    model = keras.Sequential([*layers, keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="cosine_similarity")
    return model


def snapshot(model):
    return [np.array(v.numpy(), copy=True) for v in model.variables]


def assert_unchanged(model, before):
    after = snapshot(model)
    assert len(after) == len(before)
    for a, b, v in zip(after, before, model.variables):
        np.testing.assert_array_equal(a, b, err_msg=v.path)


def test_diagnose_finds_dead_relu_and_leaves_the_model_untouched():
    model = mlp(dead=True, batchnorm=True)
    x, y = data()
    before = snapshot(model)
    np_state, py_state = np.random.get_state(), random.getstate()
    report = stalldoc.diagnose(model, x, y, **FAST)
    dead = [f for f in report.findings if f.id == "dead-relu"]
    assert dead and dead[0].layer == model.layers[0].name  # Keras numbers names per process
    assert dead[0] in report.blocking("warning") and dead[0] not in report.blocking("error")
    assert report.loss["name"] == "cosine_similarity"  # the compiled loss
    assert report.loss["steps"] == 3 and report.loss["batch_size"] == 32
    doc = json.loads(report.to_json())
    assert "dead-relu" in [f["id"] for f in doc["findings"]] and doc["data"]["samples"] == 128
    # Weights, BatchNormalization statistics and the compiled optimizer are as they were.
    assert_unchanged(model, before)
    assert int(model.optimizer.iterations.numpy()) == 0
    assert random.getstate() == py_state
    restored = np.random.get_state()
    assert restored[0] == np_state[0] and np.array_equal(restored[1], np_state[1])


def test_the_probe_did_train_and_weights_come_back_even_on_failure(monkeypatch):
    """The probe really moves the weights; a failure after it still restores them."""
    model = mlp()
    x, y = data()
    before = snapshot(model)
    seen = {}

    def fail(facts, options=None, **_):
        seen["moved"] = any(not np.array_equal(a, b) for a, b in zip(snapshot(model), before))
        raise RuntimeError("detectors failed")
    monkeypatch.setattr("stalldoc.pipeline.build_report", fail)
    with pytest.raises(RuntimeError, match="detectors failed"):
        stalldoc.diagnose(model, x, y, **FAST)
    assert seen["moved"]
    assert_unchanged(model, before)


def test_healthy_model_passes_a_pytest_gate():
    model = mlp()
    x, y = data()
    report = stalldoc.diagnose(model, x, y, steps=10, batch_size=32, loss="cosine",
                               ignore=["saturated-activation"])
    assert report.verdict == "healthy", report.to_json()
    assert not report.blocking("warning"), report.to_json()
    assert report.loss["name"] == "cosine"
    assert any(s.detector == "saturated-activation" and "ignored" in s.reason for s in report.skipped)


def test_multi_input_model_with_dict_or_list():
    keras.utils.set_random_seed(2)
    a, b = keras.Input((3,), name="a"), keras.Input((5,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(4)(a), keras.layers.Dense(4)(b)])
    model = keras.Model([a, b], keras.layers.Dense(2)(h))
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(64, 3)), rng.normal(size=(64, 5))
    y = rng.normal(size=(64, 2))
    before = snapshot(model)
    by_name = stalldoc.diagnose(model, {"b": xb, "a": xa}, y, steps=2, batch_size=16, select=["dead-relu"])
    by_order = stalldoc.diagnose(model, [xa, xb], y, steps=2, batch_size=16, select=["dead-relu"])
    assert by_name.loss["initial"] == pytest.approx(by_order.loss["initial"])
    assert by_name.passed + [s.detector for s in by_name.skipped] == ["dead-relu"]
    assert_unchanged(model, before)
    with pytest.raises(InputError, match=r"the model has inputs \['a', 'b'\]; got arrays named \['a', 'c'\]"):
        stalldoc.diagnose(model, {"a": xa, "c": xb}, y)
    with pytest.raises(InputError, match="pass a list or dict"):
        stalldoc.diagnose(model, xa, y)
    with pytest.raises(InputError, match="got a list of 1 arrays"):
        stalldoc.diagnose(model, [xa], y)
    with pytest.raises(InputError, match=r"x\['b'\] has 10 samples but y has 64"):
        stalldoc.diagnose(model, [xa, xb[:10]], y)


@pytest.mark.parametrize("kwargs, message", [
    (dict(select=["dead-relu", "nope"]), "select: unknown finding id 'nope'"),
    (dict(ignore="nope"), "ignore: unknown finding id 'nope'"),
    (dict(thresholds={"nope": {}}), "thresholds: unknown finding id 'nope'"),
    (dict(thresholds={"dead-relu": {"x": 1}}), "thresholds: dead-relu: unknown threshold 'x'"),
    (dict(thresholds={"dead-relu": {"min_active_rate": "low"}}), "must be a number"),
    (dict(steps=0), r"steps \(--steps\) must be at least 1"),
])
def test_bad_arguments_are_stalldoc_errors(kwargs, message):
    x, y = data(samples=8)
    with pytest.raises(StalldocError, match=message):
        stalldoc.diagnose(mlp(), x, y, **kwargs)


def test_bad_inputs():
    x, y = data(samples=8)
    model = mlp()
    with pytest.raises(InputError, match="expected a keras.Model, got str"):
        stalldoc.diagnose("model.keras", x, y)
    with pytest.raises(InputError, match="x has 8 samples but y has 7"):
        stalldoc.diagnose(model, x, y[:7])
    with pytest.raises(InputError, match="y: has dtype <U1, expected numbers"):
        stalldoc.diagnose(model, x, np.array(["a"] * 8))
    with pytest.raises(InputError, match="x: has zero samples"):
        stalldoc.diagnose(model, x[:0], y[:0])
    with pytest.raises(InputError, match="expects"):
        stalldoc.diagnose(model, x[:, :3], y)  # wrong feature count, caught before any step
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(InputError, match="has no defined inputs"):
        stalldoc.diagnose(unbuilt, x, y)


def _batches(x, y, size=16):
    for i in range(0, len(x), size):
        yield x[i:i + size], y[i:i + size]


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 16

    def __getitem__(self, i):
        return self.x[i * 16:(i + 1) * 16], self.y[i * 16:(i + 1) * 16]


@pytest.mark.parametrize("kind", ["tf.data batches", "tf.data samples", "generator", "PyDataset"])
def test_live_data_as_fit_takes_it(kind):
    import tensorflow as tf

    x, y = data(samples=128)  # the probe's rows with FAST: 32 x (3 + 1)
    live = {"tf.data batches": lambda: tf.data.Dataset.from_tensor_slices((x, y)).batch(16),
            "tf.data samples": lambda: tf.data.Dataset.from_tensor_slices((x, y)),
            "generator": lambda: _batches(x, y),
            "PyDataset": lambda: _Batches(x, y)}[kind]()
    report = stalldoc.diagnose(mlp(), live, **FAST)
    on_arrays = stalldoc.diagnose(mlp(), x, y, **FAST)
    assert report.to_dict()["data"]["samples"] == 128
    # The same rows, so the same measurements as on the arrays.
    assert report.loss["initial"] == pytest.approx(on_arrays.loss["initial"], rel=1e-6)
    assert [f.id for f in report.findings] == [f.id for f in on_arrays.findings]
    assert any("the input statistics are over that sample" in n for n in report.facts.notes)


def test_a_live_pipeline_is_read_only_as_far_as_the_probe_needs():
    import tensorflow as tf

    needed_batches = 32 * (3 + 1) // 16
    read = []

    def endless():
        for i in range(10**9):
            if i >= needed_batches:
                raise RuntimeError(f"read past {needed_batches} batches")
            read.append(i)
            yield data(samples=16, seed=i)

    spec = (tf.TensorSpec((None, 8), tf.float32), tf.TensorSpec((None, 4), tf.float32))
    report = stalldoc.diagnose(mlp(), tf.data.Dataset.from_generator(endless, output_signature=spec), **FAST)
    assert len(read) == needed_batches and report.to_dict()["data"] == {"path": "<tf.data.Dataset>", "samples": 128}


def test_loss_as_a_keras_object_or_a_function():
    import tensorflow as tf

    x, y = data()

    def my_loss(y_true, y_pred):
        return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)

    by_name = stalldoc.diagnose(mlp(), x, y, loss="mse", **FAST)
    by_object = stalldoc.diagnose(mlp(), x, y, loss=keras.losses.MeanSquaredError(), **FAST)
    by_function = stalldoc.diagnose(mlp(), x, y, loss=my_loss, **FAST)
    assert by_object.loss["name"] == "mean_squared_error" and by_function.loss["name"] == "my_loss"
    for report in (by_object, by_function):
        assert report.loss["initial"] == pytest.approx(by_name.loss["initial"], rel=1e-5)
        assert report.loss["final"] == pytest.approx(by_name.loss["final"], rel=1e-4)


def test_bad_live_data_and_losses():
    import tensorflow as tf

    x, y = data(samples=32)
    with pytest.raises(InputError, match=r"^x: a tf.data.Dataset yields \(x, y\) itself; y must be None"):
        stalldoc.diagnose(mlp(), tf.data.Dataset.from_tensor_slices((x, y)).batch(8), y, **FAST)
    with pytest.raises(InputError, match=r"^x \(a tf.data.Dataset\) yields batches without targets"):
        stalldoc.diagnose(mlp(), tf.data.Dataset.from_tensor_slices(x).batch(8), **FAST)
    with pytest.raises(InputError, match=r"^x \(a Python generator\) yielded nothing"):
        stalldoc.diagnose(mlp(), iter(()), **FAST)
    with pytest.raises(InputError, match="^loss: expected a keras.losses.Loss, a function"):
        stalldoc.diagnose(mlp(), x, y, loss=3, **FAST)
