"""The probe computes the loss fit computes: Keras' cross-entropies read the logits behind a
sigmoid/softmax output, and targets of rank 1 are expanded, not the predictions squeezed."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from stalldoc.api import diagnose


def _data(n=768):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")


def _model(units, activation, loss):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(units, activation=activation)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    return model


@pytest.mark.parametrize("units,activation,loss", [
    (1, "softmax", "binary_crossentropy"),  # the loss reads the logit: it moves, the output stays 1
    (1, "sigmoid", "categorical_crossentropy"),  # softmax over one logit: exactly 0, as in fit
])
def test_the_probe_loss_is_the_loss_keras_computes(units, activation, loss):
    x, y = _data()
    model = _model(units, activation, loss)
    expected = float(model.compute_loss(x=x[:64], y=y[:64], y_pred=model(x[:64])))
    report = diagnose(model, x, y, steps=5, max_steps=5)
    # The probe's first per-step loss is on its own batch: compare the evaluation on the same rows.
    held = report.facts.loss.initial
    assert np.isfinite(held)
    assert abs(held - expected) < 0.15 * max(1.0, abs(expected)), (held, expected)


def test_single_unit_softmax_under_binary_crossentropy_still_stalls_and_says_the_loss_moves():
    x, y = _data()
    report = diagnose(_model(1, "softmax", "binary_crossentropy"), x, y, steps=20)
    assert report.verdict == "stalled"
    first = report.findings[0]
    assert first.id == "single-unit-softmax"
    assert "every prediction stays 1" in first.message or "cannot change" in first.message


def test_from_logits_true_on_a_softmax_output_trains_and_is_not_a_stall():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 8)).astype("float32")
    y = np.argmax(x[:, :4], axis=1).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    report = diagnose(model, x, y, steps=20)
    assert report.facts.model.output_carries_logits is True
    assert report.verdict == "healthy"
    mismatch = [f for f in report.findings if f.id == "loss-output-mismatch"]
    assert mismatch and mismatch[0].severity.label == "info"
    assert report.exit_code("warning") == 0
