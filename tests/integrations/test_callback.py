"""StallWatch: plateau detection (fast, diagnosis faked) and real short fits (stalled / healthy)."""

from __future__ import annotations

import math

import factories as F
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from stalldoc.keras import StallWatch  # noqa: E402
from stalldoc.pipeline import build_report  # noqa: E402

# ---------------------------------------------------------------- plateau logic, diagnosis faked


class FakeModel:
    stop_training = False


@pytest.fixture
def fake_diagnose(monkeypatch):
    calls = []

    def diagnose(model, x, y, **kwargs):
        calls.append((x, y, kwargs))
        return build_report(F.facts(loss_initial=1.0, loss_final=0.999))  # stalled, no findings
    monkeypatch.setattr("stalldoc.api.diagnose", diagnose)
    return calls


def watch(losses, **kwargs):
    kwargs.setdefault("verbose", 0)
    cb = StallWatch(np.zeros((4, 2)), np.zeros((4, 2)), **kwargs)
    cb.set_model(FakeModel())
    cb.on_train_begin()
    for epoch, value in enumerate(losses):
        cb.on_epoch_end(epoch, {"loss": value})
        if cb.model.stop_training:
            break
    return cb


def test_moving_loss_never_diagnoses(fake_diagnose):
    cb = watch([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert fake_diagnose == [] and cb.reports == []


def test_plateau_after_patience(fake_diagnose):
    cb = watch([1.0, 0.9, 0.895, 0.893, 0.892, 0.5], patience=3, min_delta=0.01)
    assert len(fake_diagnose) == 1
    assert cb.report.loss["trigger"] == "epoch 5"  # 3 epochs within 1% of 0.9
    assert cb.model.stop_training is False  # stop_training defaults to False


def test_relative_tolerance_on_a_negative_loss(fake_diagnose):
    # Keras' cosine_similarity loss is negative: -0.50 -> -0.504 is a 0.8% improvement.
    watch([-0.50, -0.503, -0.504, -0.5045], patience=3, min_delta=0.01)
    assert len(fake_diagnose) == 1
    watch([-0.50, -0.52, -0.54, -0.56], patience=3, min_delta=0.01)
    assert len(fake_diagnose) == 1


def test_non_finite_loss_diagnoses_at_once(fake_diagnose):
    cb = watch([1.0, math.nan, 0.5], patience=5)
    assert len(fake_diagnose) == 1 and cb.report.loss["trigger"] == "epoch 2"


def test_stop_training_and_once(fake_diagnose):
    cb = watch([1.0] * 10, patience=2, stop_training=True)
    assert len(fake_diagnose) == 1 and cb.model.stop_training is True
    assert len(cb.history) == 3
    cb = watch([1.0] * 10, patience=2, once=False)
    assert len(fake_diagnose) == 1 + 3  # epochs 3, 6, 9


def test_held_batch_and_options_are_passed(fake_diagnose):
    x = np.arange(40.0).reshape(20, 2)
    y = np.arange(20.0)
    cb = StallWatch(x, y, held_samples=8, steps=4, batch_size=2, seed=3, loss="cosine", select=["dead-relu"],
                    patience=1, verbose=0)
    cb.set_model(FakeModel())
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 1.0})
    cb.on_epoch_end(1, {"loss": 1.0})
    (hx, hy, kwargs), = fake_diagnose
    assert hx.shape == (8, 2) and hy.shape == (8,)
    np.testing.assert_array_equal(hx[:, 0] / 2, hy)  # the same rows of x and y
    assert kwargs == dict(steps=4, max_steps=None, batch_size=2, seed=3, loss="cosine", select=["dead-relu"],
                          ignore=None, thresholds=None)


def test_printed_output(fake_diagnose):
    lines = []
    cb = StallWatch(np.zeros((4, 2)), np.zeros((4, 2)), patience=1, print_fn=lines.append)
    cb.set_model(FakeModel())
    cb.on_train_begin()
    for epoch in range(3):
        cb.on_epoch_end(epoch, {"loss": 0.5})
    assert lines[0] == ("StallWatch: loss 0.5 has not improved on 0.5 by 0.01 (relative) for 1 epochs at "
                        "epoch 2; diagnosing the current model...")
    assert "STALLED" in lines[1] and "\x1b[" not in lines[1]
    assert len(lines) == 2


def test_epoch_mode_has_no_batch_hook():
    from keras.src import utils

    epoch = StallWatch()
    assert utils.is_default(epoch.on_train_batch_end) and utils.is_default(epoch.on_batch_end)
    assert not utils.is_default(StallWatch(per="batch").on_train_batch_end)


@pytest.mark.parametrize("kwargs", [dict(per="step"), dict(patience=0), dict(min_delta=-1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="StallWatch"):
        StallWatch(**kwargs)


# ---------------------------------------------------------------- real fits


def task(samples=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, 8)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(8, 4))).astype("float32")
    return x, y


def model(dead: bool):
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((8,)),
                          keras.layers.Dense(16, activation="relu",
                                             bias_initializer=keras.initializers.Constant(-20.0 if dead else 0.0)),
                          keras.layers.Dense(4)])
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="cosine_similarity")
    return m


@pytest.mark.e2e
def test_stalled_fit_is_diagnosed_and_stopped():
    x, y = task()
    m = model(dead=True)
    lines = []
    cb = StallWatch(patience=2, steps=4, stop_training=True, print_fn=lines.append)  # held batch from fit's x, y
    history = m.fit(x, y, epochs=10, batch_size=64, verbose=0, callbacks=[cb])
    assert len(history.history["loss"]) < 10  # stopped early
    assert cb.report is not None
    assert "dead-relu" in [f.id for f in cb.report.findings]
    assert cb.report.data["samples"] == 256
    text = "\n".join(lines)
    assert "diagnosing the current model" in text and "dead-relu" in text and "stopping training" in text


@pytest.mark.e2e
def test_healthy_fit_is_left_alone():
    x, y = task()
    m = model(dead=False)
    lines = []
    cb = StallWatch(x[:64], y[:64], patience=2, stop_training=True, print_fn=lines.append)
    history = m.fit(x, y, epochs=6, batch_size=64, verbose=0, callbacks=[cb])
    assert len(history.history["loss"]) == 6
    assert cb.reports == [] and lines == []
    assert len(cb.history) == 6


@pytest.mark.e2e
def test_held_batch_from_a_tf_data_pipeline_and_per_batch():
    import tensorflow as tf

    x, y = task()
    m = model(dead=True)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    cb = StallWatch(per="batch", patience=3, steps=3, stop_training=True, verbose=0)
    m.fit(ds, epochs=3, verbose=0, shuffle=False, callbacks=[cb])
    assert cb.report is not None and "dead-relu" in [f.id for f in cb.report.findings]
    assert cb.report.data["samples"] == 32  # the first batch of the pipeline
    assert cb.report.loss["trigger"].startswith("batch ")
    assert len(cb.history) < 8  # stopped within the first epoch


@pytest.mark.e2e
def test_python_generator_without_held_batch_says_so():
    x, y = task(samples=64)
    m = model(dead=True)

    def batches():
        while True:
            yield x[:32], y[:32]
    lines = []
    cb = StallWatch(patience=1, stop_training=True, print_fn=lines.append)
    history = m.fit(batches(), steps_per_epoch=2, epochs=4, verbose=0, shuffle=False, callbacks=[cb])
    assert len(history.history["loss"]) < 4  # the plateau still stops it
    assert cb.reports == []
    assert any("cannot diagnose" in line and "pass StallWatch(x, y)" in line for line in lines)
