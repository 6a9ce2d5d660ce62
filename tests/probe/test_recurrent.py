"""The recurrent unroll (stalldoc.probe.recurrent) pinned against Keras' own layers and NumPy.

The carried state the unroll ends with must be the state Keras' layer returns (the LSTM's cell
state through ``return_state``, else its output) on the same rows, with masks and
``go_backwards``; the gate statistics must match a NumPy float64 recomputation of the cell's
equations, gate by gate (which also pins Keras' gate order in the fused kernels).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from stalldoc.probe.recurrent import GATES, PER_GATE, SAMPLE_ROWS, directions, largest_singular_values, unroll_stats

pytestmark = pytest.mark.e2e

ROWS, STEPS, FEATURES, UNITS = 6, 7, 3, 5


def sequence(seed=0, rows=ROWS):
    return np.random.default_rng(seed).normal(size=(rows, STEPS, FEATURES)).astype("float32")


def stats_of(layer, x, mask=None, initial=None):
    (direction,), reason = directions(layer, layer.name)
    assert reason is None
    return np.asarray(unroll_stats(direction, x, mask, initial), dtype=np.float64)


def rms(a):
    return float(np.sqrt(np.mean(np.square(np.asarray(a, dtype=np.float64)))))


@pytest.mark.parametrize("make", [
    lambda **kw: keras.layers.GRU(UNITS, **kw),
    lambda **kw: keras.layers.GRU(UNITS, reset_after=False, **kw),
    lambda **kw: keras.layers.SimpleRNN(UNITS, **kw),
], ids=["gru", "gru-reset-before", "simple-rnn"])
@pytest.mark.parametrize("backwards", [False, True])
def test_final_state_is_the_layers_output(make, backwards):
    keras.utils.set_random_seed(1)
    layer = make(go_backwards=backwards, bias_initializer="random_normal")
    x = sequence()
    out = layer(x)
    stats = stats_of(layer, x)
    assert stats[-3] == pytest.approx(rms(out), rel=1e-4)  # last time step's state RMS
    assert stats[-1] == STEPS


def test_lstm_final_cell_state_with_a_mask_and_an_initial_state():
    keras.utils.set_random_seed(2)
    layer = keras.layers.LSTM(UNITS, return_state=True)
    x = sequence()
    mask = np.ones((ROWS, STEPS), bool)
    mask[:3, :2] = False  # left padding: the state is carried over masked steps
    mask[3:, -3:] = False  # right padding
    h0 = np.random.default_rng(3).normal(size=(ROWS, UNITS)).astype("float32")
    c0 = np.random.default_rng(4).normal(size=(ROWS, UNITS)).astype("float32")
    _, _, c = layer(x, mask=mask, initial_state=[h0, c0])
    stats = stats_of(layer, x, mask, [h0, c0])
    assert stats[-3] == pytest.approx(rms(c), rel=1e-4)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_lstm_gate_statistics_match_numpy_gate_by_gate():
    keras.utils.set_random_seed(5)
    layer = keras.layers.LSTM(UNITS)
    x = sequence(rows=4) * 3.0  # large enough that some gate values saturate
    layer(x)
    cell = layer.cell
    kernel, recurrent, bias = (np.asarray(v.numpy(), np.float64) for v in (cell.kernel, cell.recurrent_kernel,
                                                                            cell.bias))
    # Push the input gate's bias far negative: it must be the first block of Keras' fused kernel.
    bias[:UNITS] = -30.0
    cell.bias.assign(bias.astype("float32"))
    h = np.zeros((4, UNITS))
    c = np.zeros((4, UNITS))
    values = {name: [] for name in GATES["LSTM"]}
    for t in range(STEPS):
        z = x[:, t].astype(np.float64) @ kernel + h @ recurrent + bias
        zi, zf, zg, zo = np.split(z, 4, axis=-1)
        i, f, g, o = _sigmoid(zi), _sigmoid(zf), np.tanh(zg), _sigmoid(zo)
        c = f * c + i * g
        h = o * np.tanh(c)
        for name, v in zip(GATES["LSTM"], (i, f, g, o, np.tanh(c))):
            values[name].append(v)
    stats = stats_of(layer, x)
    for k, (name, act) in enumerate(zip(GATES["LSTM"], ("sigmoid", "sigmoid", "tanh", "sigmoid", "tanh"))):
        v = np.stack(values[name])
        gain = 4 * v * (1 - v) if act == "sigmoid" else 1 - v**2
        expected = (np.mean(gain < 0.05), np.mean(v), np.mean(gain))
        np.testing.assert_allclose(stats[PER_GATE * k: PER_GATE * (k + 1)], expected, atol=2e-5, err_msg=name)
    assert stats[0] == 1.0 and stats[1] < 1e-12  # the input gate is shut
    assert 0.0 < stats[PER_GATE * 2] < 1.0  # the candidate is partly saturated: the level is informative


def test_masked_steps_are_not_counted():
    keras.utils.set_random_seed(6)
    layer = keras.layers.GRU(UNITS)
    x = sequence()
    layer(x)
    mask = np.ones((ROWS, STEPS), bool)
    mask[:, 3:] = False
    x_huge = x.copy()
    x_huge[:, 3:] = 1e4  # would saturate every gate, but is masked out
    masked = stats_of(layer, x_huge, mask)
    plain = stats_of(layer, x[:, :3])
    np.testing.assert_allclose(masked[:-4], plain[:-4], atol=1e-6)


def test_only_sample_rows_are_unrolled_and_bidirectional_halves_are_separate():
    keras.utils.set_random_seed(7)
    layer = keras.layers.Bidirectional(keras.layers.LSTM(UNITS))
    x = sequence(rows=SAMPLE_ROWS + 10)
    layer(x)
    found, reason = directions(layer, "bi")
    assert reason is None and [d.path for d in found] == ["bi/forward", "bi/backward"]
    forward, backward = (np.asarray(unroll_stats(d, x)) for d in found)
    assert not np.allclose(forward, backward)
    # Rows past SAMPLE_ROWS change nothing.
    x2 = x.copy()
    x2[SAMPLE_ROWS:] = 1e4
    np.testing.assert_allclose(np.asarray(unroll_stats(found[0], x2)), forward, rtol=1e-6)


def test_unhandled_recurrent_layers_say_why():
    stateful = keras.layers.LSTM(UNITS, stateful=True)
    assert directions(stateful, "s")[1] == "s: stateful (the state carried between batches is not known)"
    stacked = keras.layers.RNN([keras.layers.LSTMCell(2), keras.layers.LSTMCell(2)])
    assert "is not LSTM, GRU or SimpleRNN" in directions(stacked, "r")[1]
    assert directions(keras.layers.Dense(2), "d") == ([], None)


def test_recurrent_kernel_singular_values_per_gate():
    keras.utils.set_random_seed(8)
    layer = keras.layers.GRU(UNITS)
    layer(sequence())
    (direction,), _ = directions(layer, "gru")
    value = layer.cell.recurrent_kernel.numpy() * 0.0
    value[:, 2 * UNITS:] = np.eye(UNITS) * 3.0  # the candidate block stretches by 3
    norms = largest_singular_values(direction, value)
    assert norms == pytest.approx({"update_gate": 0.0, "reset_gate": 0.0, "candidate": 3.0})
