"""The loss is judged on enough held-out rows to hold the rarest class."""

from __future__ import annotations

import numpy as np
import pytest

from stalldoc.probe import EVAL_MAX_ROWS, _evaluation_rows, _held_out, rarest_class_share


def test_rarest_class_share_of_ids_one_hot_and_label_columns():
    ids = np.array([0] * 95 + [1] * 4 + [2] * 1, dtype=np.float32)
    assert rarest_class_share(ids) == 0.01
    assert rarest_class_share(ids[:, None]) == 0.01
    one_hot = np.eye(3, dtype=np.float32)[ids.astype(int)]
    assert rarest_class_share(one_hot) == pytest.approx(0.01)
    labels = np.zeros((100, 2), np.float32)
    labels[:3, 0] = 1
    labels[:50, 1] = 1
    assert rarest_class_share(labels) == pytest.approx(0.03)
    assert rarest_class_share(np.linspace(0, 1, 100).astype(np.float32)) is None  # values, not classes
    assert rarest_class_share(np.arange(200, dtype=np.float32)) is None  # too many to be classes
    many = np.eye(1000, dtype=np.float32)[np.random.default_rng(0).integers(0, 1000, 168)]
    assert rarest_class_share(many) is None  # 1000 one-hot classes: no few batches hold the rarest


def test_an_evaluation_set_larger_than_a_batch_is_evaluated_in_chunks_of_it():
    import keras

    from stalldoc.probe.step import InstrumentedStep

    rng = np.random.default_rng(2)
    x = rng.normal(size=(96, 5)).astype("float32")
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 96)]
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    step = InstrumentedStep(model, keras.losses.CategoricalCrossentropy())
    whole, whole_pred = step.evaluate([x], y)
    step.eval_batch = 32
    calls = []
    evaluate = step._evaluate
    step._evaluate = lambda xs, ys, training: calls.append(len(ys)) or evaluate(xs, ys, training)
    chunked, chunked_pred = step.evaluate([x], y)
    assert calls == [32, 32, 32]
    assert chunked == pytest.approx(whole, rel=1e-6)
    np.testing.assert_allclose(chunked_pred, whole_pred, rtol=1e-6)


def test_a_rare_class_widens_the_evaluation_rows_a_balanced_one_does_not():
    rng = np.random.default_rng(0)
    indices = rng.permutation(20000)[:161 * 64]
    balanced = (rng.random(20000) < 0.5).astype(np.float32)
    assert _evaluation_rows(balanced, indices, 64, 20000) == 64
    rare = (rng.random(20000) < 0.01).astype(np.float32)
    rows = _evaluation_rows(rare, indices, 64, 20000)
    assert rows % 64 == 0 and 64 < rows <= EVAL_MAX_ROWS
    assert rows * rare[indices].mean() >= 6  # about eight of the rare class expected
    assert _evaluation_rows(rare, indices[:320], 64, 320) == 64  # too little data to hold more out


def test_held_out_evaluation_rows_are_never_trained_on():
    rng = np.random.default_rng(1)
    indices = rng.permutation(5000)[:21 * 64]
    rows = _held_out(indices, 64, 5000, eval_rows=320)
    evaluation, training = rows[:320], rows[320:]
    assert training.size == 20 * 64
    assert not np.isin(training, evaluation).any()


def test_a_99_to_1_classifier_is_judged_against_the_real_prior():
    import keras

    from stalldoc.api import diagnose

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 10)).astype("float32")
    y = (rng.random(6000) < 0.01).astype("float32")  # labels unrelated to x: only the prior is learnable
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    report = diagnose(model, x, y, steps=10, max_steps=10)
    p = y.mean()
    prior = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert abs(report.loss.baseline - prior) < 0.5 * prior  # a batch of 64 with no positive gives ~0
    assert any("held-out rows" in note for note in report.facts.notes)
