"""Recurrent nets end to end (issue 12, item 5): LSTM/GRU gates recomputed from the layer's input
sequence, a saturated gate found and named, a recurrent forward pass that explodes found as the
cause of the learning-rate symptoms; healthy LSTM/GRU models get no finding."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from stalldoc.api import diagnose

pytestmark = pytest.mark.e2e

UNITS, STEPS, FEATURES = 16, 12, 4


def data(seed=0, samples=512, steps=STEPS):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, steps, FEATURES)).astype("float32")
    y = (x[:, -3:, 0].sum(axis=1, keepdims=True) + x[:, :, 1].mean(axis=1, keepdims=True)).astype("float32")
    return x, y


def model(layer, optimizer=None, steps=STEPS):
    inp = keras.Input((steps, FEATURES))
    out = keras.layers.Dense(1, name="head")(layer(inp))
    net = keras.Model(inp, out)
    net.compile(optimizer or keras.optimizers.Adam(1e-2), "mse")
    return net


def set_gate_bias(cell, gate: int, value: float):
    bias = cell.bias.numpy()
    flat = bias.reshape(-1, bias.shape[-1])  # GRU(reset_after) keeps (2, 3 * units): the input half's row
    flat[0, gate * UNITS:(gate + 1) * UNITS] = value
    cell.bias.assign(flat.reshape(bias.shape))


@pytest.mark.parametrize("make", [lambda: keras.layers.LSTM(UNITS, name="lstm"),
                                  lambda: keras.layers.GRU(UNITS, name="gru")], ids=["lstm", "gru"])
def test_a_healthy_recurrent_model_trains_without_findings(make):
    keras.utils.set_random_seed(0)
    x, y = data()
    report = diagnose(model(make()), x, y, steps=10)
    assert report.verdict == "healthy"
    assert report.findings == [], [(f.id, f.layer, f.message) for f in report.findings]
    (rf,) = report.facts.recurrent
    assert rf.timesteps == STEPS and rf.layer in ("lstm", "gru")
    assert all(float(np.median(g.saturated_fraction)) < 0.2 for g in rf.gates)
    (row,) = [r for r in report.to_dict()["layers"] if r.get("recurrent")]
    (direction,) = row["recurrent"]
    assert direction["name"] == rf.layer and set(direction["gates"]) == {g.name for g in rf.gates}
    assert len(direction["state_growth"]) == report.facts.steps


def test_an_lstm_with_its_input_gate_shut_stalls_and_the_gate_is_named():
    keras.utils.set_random_seed(0)
    x, y = data()
    layer = keras.layers.LSTM(UNITS, name="lstm")
    net = model(layer)
    set_gate_bias(layer.cell, 0, -20.0)  # sigmoid(-20) = 2e-9: nothing enters the cell state
    report = diagnose(net, x, y, steps=10)
    assert report.verdict == "stalled"
    first = report.findings[0]
    assert (first.id, first.layer) == ("saturated-activation", "lstm/input_gate"), report.findings
    assert first.evidence["gates"]["input_gate"]["mean"] < 1e-6
    assert "bias of the input_gate in layer 'lstm' back to Keras' default (0 for the input_gate)" in first.fix


def test_a_gru_whose_update_gate_holds_the_state_stalls_and_the_gate_is_named():
    keras.utils.set_random_seed(0)
    x, y = data()
    layer = keras.layers.GRU(UNITS, name="gru")
    net = model(layer)
    set_gate_bias(layer.cell, 0, 20.0)  # z = 1: h stays at its initial zeros
    report = diagnose(net, x, y, steps=10)
    assert report.verdict == "stalled"
    first = report.findings[0]
    assert (first.id, first.layer) == ("saturated-activation", "gru/update_gate"), report.findings
    assert "never changes" in first.message


def test_an_exploding_recurrent_forward_pass_is_the_cause_of_the_learning_rate_symptom():
    keras.utils.set_random_seed(0)
    x, y = data(steps=20)
    # A ReLU recurrence whose kernel stretches the state 3x per step: x1e5 over 20 steps (x1e3 over 12).
    layer = keras.layers.SimpleRNN(UNITS, activation="relu", name="rnn",
                                   recurrent_initializer=keras.initializers.Orthogonal(gain=3.0))
    report = diagnose(model(layer, keras.optimizers.SGD(1e-2), steps=20), x, y, steps=10)
    assert report.verdict == "stalled"
    ids = [f.id for f in report.findings]
    first = report.findings[0]
    assert (first.id, first.layer) == ("exploding-activation", "rnn"), ids
    assert "time steps" in first.message and first.evidence["recurrent_norms"]["state"] == pytest.approx(3.0, rel=1e-3)
    assert "learning-rate-too-high" in ids and "learning-rate-too-high" in first.explains
    assert first.confirmation["status"] == "confirmed"  # the re-initialized (orthogonal) recurrence trains


@pytest.mark.parametrize("mask_zero", [True, False])
def test_masked_padding_is_left_out_of_the_gates(mask_zero):
    # Token 0 pads the second half of every sequence and embeds to a huge vector: unmasked, the
    # padding steps saturate the gates; masked (Embedding(mask_zero=True) hands the LSTM a mask
    # through the probe's graph), they are neither counted nor allowed to change the state.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 10, size=(256, STEPS)).astype("int32")
    tokens[:, STEPS // 2:] = 0
    y = (tokens[:, :3].mean(axis=1, keepdims=True) / 10.0).astype("float32")
    inp = keras.Input((STEPS,), dtype="int32")
    embedding = keras.layers.Embedding(10, FEATURES, mask_zero=mask_zero)
    out = keras.layers.Dense(1)(keras.layers.LSTM(UNITS, name="lstm")(embedding(inp)))
    net = keras.Model(inp, out)
    net.compile(keras.optimizers.Adam(1e-2), "mse")
    table = embedding.embeddings.numpy()
    table[0] = 50.0
    embedding.embeddings.assign(table)
    report = diagnose(net, tokens, y, steps=5)
    (rf,) = report.facts.recurrent
    worst = max(float(np.median(g.saturated_fraction)) for g in rf.gates)
    assert (worst < 0.1) if mask_zero else (worst > 0.4), worst
