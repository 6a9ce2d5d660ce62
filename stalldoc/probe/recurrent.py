"""Recurrent layers (LSTM, GRU, SimpleRNN): gate statistics recomputed from the sequence the
layer received in the probe's step and its weights, since Keras never exposes gate values.

The cell's equations are unrolled again, in the graph, on at most ``SAMPLE_ROWS`` rows of that
sequence, outside the gradient tape and before the update (the weights the forward pass used).
Only scalars leave: per gate its saturated fraction, mean value and mean local derivative, and
the RMS of the carried state (the LSTM's cell state, else the hidden state) at its first
non-zero time step, its last and its peak.

Handled: LSTM, GRU (``reset_after`` either way), SimpleRNN, and each direction of a
Bidirectional wrapper of them; masks (a masked step neither counts nor changes the state, as
Keras carries the state over it); ``go_backwards``; ``initial_state`` passed to the call
(Bidirectional: from zeros); ``return_sequences``/``return_state`` do not matter (the input is
unrolled). Not handled, with a note: stateful layers (the state carried between batches is not
known), other cells (ConvLSTM, custom cells, stacked cells). Dropout and recurrent dropout are
left out: the statistics describe the cell's deterministic part.
"""

from __future__ import annotations

from dataclasses import dataclass

from stalldoc.facts import SATURATING, activation_family

# Rows of the batch the cell is unrolled on: enough for fractions, cheap for long sequences.
SAMPLE_ROWS = 64

GATES = {
    "LSTM": ("input_gate", "forget_gate", "cell_candidate", "output_gate", "cell_output"),
    "GRU": ("update_gate", "reset_gate", "candidate"),
    "SimpleRNN": ("state",),
}
# Per gate: saturated fraction, mean value, mean local derivative relative to its peak.
PER_GATE = 3
# Then: carried-state RMS at its first non-zero time step, at the last step, at its peak; time steps.
STATE_STATS = 4


@dataclass
class Direction:
    """One recurrence to unroll: ``path`` names it (``lstm``, ``bidirectional/backward``)."""

    path: str
    layer: object  # the keras.layers.RNN (LSTM, GRU, SimpleRNN) itself
    kind: str  # a key of GATES
    backward: bool = False  # the backward half of a Bidirectional wrapper

    @property
    def cell(self):
        return self.layer.cell

    def gate_activations(self) -> list[str | None]:
        from stalldoc.probe.instrument import function_name

        act = function_name(self.cell.activation)
        if self.kind == "SimpleRNN":
            return [act]
        rec = function_name(self.cell.recurrent_activation)
        if self.kind == "LSTM":
            return [rec, rec, act, rec, act]
        return [rec, rec, act]


def kind_of(layer) -> str | None:
    """"LSTM", "GRU" or "SimpleRNN" for a Keras RNN layer with that built-in cell, else None."""
    import keras

    if not isinstance(layer, keras.layers.RNN):
        return None
    cell = getattr(layer, "cell", None)
    for kind, cls in (("LSTM", keras.layers.LSTMCell), ("GRU", keras.layers.GRUCell),
                      ("SimpleRNN", keras.layers.SimpleRNNCell)):
        if type(cell) is cls:
            return kind
    return None


def directions(layer, path: str) -> tuple[list[Direction], str | None]:
    """The recurrences of ``layer`` (one, or a Bidirectional's two), and why it is not unrolled
    when it is a recurrent layer that is not handled (None when it is handled or not recurrent)."""
    import keras

    if isinstance(layer, keras.layers.Bidirectional):
        halves = [("forward", layer.forward_layer, False), ("backward", layer.backward_layer, True)]
    elif isinstance(layer, keras.layers.RNN):
        halves = [("", layer, False)]
    else:
        return [], None
    out = []
    for name, rnn, backward in halves:
        kind = kind_of(rnn)
        if kind is None:
            return [], f"{path}: its cell ({type(getattr(rnn, 'cell', None)).__name__}) is not LSTM, GRU or SimpleRNN"
        if getattr(rnn, "stateful", False):
            return [], f"{path}: stateful (the state carried between batches is not known)"
        out.append(Direction(path=f"{path}/{name}" if name else path, layer=rnn, kind=kind, backward=backward))
    return out, None


def call_inputs(args, kwargs):
    """(sequence, mask, initial state list or None) from a recurrent layer's call arguments."""
    from keras.src.backend.common.masking import get_keras_mask

    first = args[0] if args else kwargs.get("sequences", kwargs.get("inputs"))
    initial = kwargs.get("initial_state")
    if isinstance(first, (list, tuple)):  # rnn([x, h0, c0])
        first, initial = first[0], list(first[1:]) or initial
    mask = kwargs.get("mask")
    if isinstance(mask, (list, tuple)):
        mask = mask[0] if mask else None
    if mask is None:
        mask = get_keras_mask(first)
    return first, mask, initial


def unroll_stats(direction: Direction, sequence, mask=None, initial_state=None):
    """One 1-D float32 tensor: PER_GATE values per gate (GATES order), then STATE_STATS."""
    import tensorflow as tf

    from stalldoc.probe.instrument import SATURATION_GAIN, local_gain

    cell, kind = direction.cell, direction.kind
    units = int(cell.units)
    x = tf.stop_gradient(tf.cast(sequence[:SAMPLE_ROWS], tf.float32))
    rows = tf.shape(x)[0]
    if mask is None:
        mask = tf.ones(tf.shape(x)[:2], tf.bool)
    mask = tf.cast(mask[:SAMPLE_ROWS], tf.float32)
    if getattr(direction.layer, "go_backwards", False):
        x, mask = tf.reverse(x, [1]), tf.reverse(mask, [1])

    def value(v):
        return tf.stop_gradient(tf.cast(tf.convert_to_tensor(v), tf.float32))

    kernel, recurrent = value(cell.kernel), value(cell.recurrent_kernel)
    bias = value(cell.bias) if cell.use_bias else None
    input_bias = recurrent_bias = None
    if bias is not None:
        if kind == "GRU" and cell.reset_after:
            input_bias, recurrent_bias = bias[0], bias[1]
        else:
            input_bias = bias
    projected = tf.einsum("btf,fu->btu", x, kernel)
    if input_bias is not None:
        projected = projected + input_bias
    act, rec = cell.activation, getattr(cell, "recurrent_activation", None)

    def step(state, xz):
        if kind == "LSTM":
            h, c = state
            zi, zf, zg, zo = tf.split(xz + tf.matmul(h, recurrent), 4, axis=-1)
            i, f, g, o = rec(zi), rec(zf), act(zg), rec(zo)
            c = f * c + i * g
            out = act(c)
            return (o * out, c), (i, f, g, o, out), c
        if kind == "GRU":
            (h,) = state
            x_z, x_r, x_h = tf.split(xz, 3, axis=-1)
            if cell.reset_after:
                inner = tf.matmul(h, recurrent)
                if recurrent_bias is not None:
                    inner = inner + recurrent_bias
                r_z, r_r, r_h = tf.split(inner, 3, axis=-1)
                z, r = rec(x_z + r_z), rec(x_r + r_r)
                hh = act(x_h + r * r_h)
            else:
                r_z, r_r = tf.split(tf.matmul(h, recurrent[:, : 2 * units]), 2, axis=-1)
                z, r = rec(x_z + r_z), rec(x_r + r_r)
                hh = act(x_h + tf.matmul(r * h, recurrent[:, 2 * units:]))
            h = z * h + (1.0 - z) * hh
            return (h,), (z, r, hh), h
        (h,) = state
        h = act(xz + tf.matmul(h, recurrent))
        return (h,), (h,), h

    acts = direction.gate_activations()
    saturating = [activation_family(a) == SATURATING for a in acts]
    zeros = tf.zeros([rows, units], tf.float32)
    n_states = 2 if kind == "LSTM" else 1
    if initial_state is not None and not direction.backward and len(initial_state) == n_states:
        start = tuple(tf.stop_gradient(tf.cast(s[:SAMPLE_ROWS], tf.float32)) for s in initial_state)
    else:
        start = (zeros,) * n_states
    def scan_fn(carry, inputs):
        state = carry[0]
        xz, m = inputs
        new_state, gates, carried = step(state, xz)
        keep = m[:, None]
        new_state = tuple(keep * n + (1.0 - keep) * s for s, n in zip(state, new_state))
        carried = keep * carried + (1.0 - keep) * (state[1] if kind == "LSTM" else state[0])
        return new_state, tf.stack(gates), carried

    # The loop only steps the recurrence; every statistic is reduced once, over all time steps.
    time_major = (tf.transpose(projected, [1, 0, 2]), tf.transpose(mask, [1, 0]))
    first_gates = tf.zeros([len(acts), rows, units])
    _, gates, carried = tf.scan(scan_fn, time_major, initializer=(start, first_gates, zeros))
    weight = tf.transpose(mask, [1, 0])[:, None, :, None]  # (time, 1, rows, 1) against (time, gate, rows, units)
    count = tf.maximum(tf.reduce_sum(weight) * units, 1.0)
    nan = tf.constant(float("nan"))
    totals = []
    for g, (act_name, sat) in enumerate(zip(acts, saturating)):
        values = gates[:, g]
        w = weight[:, 0]
        mean = tf.reduce_sum(w * values) / count
        if sat:
            gain = tf.clip_by_value(local_gain(values, act_name), 0.0, 1.0)
            totals += [tf.reduce_sum(w * tf.cast(gain < SATURATION_GAIN, tf.float32)) / count, mean,
                       tf.reduce_sum(w * gain) / count]
        else:
            totals += [nan, mean, nan]
    rms = tf.sqrt(tf.reduce_mean(tf.square(carried), axis=[1, 2]))  # per time step, over rows and units
    nonzero = rms > 0.0
    first = tf.cond(tf.reduce_any(nonzero), lambda: tf.boolean_mask(rms, nonzero)[0], lambda: nan)
    steps = tf.cast(tf.shape(rms)[0], tf.float32)
    return tf.stack([*totals, first, rms[-1], tf.reduce_max(rms), steps])


def largest_singular_values(direction: Direction, recurrent_kernel) -> dict[str, float]:
    """Largest singular value of each gate's block of the recurrent kernel (NumPy, no graph):
    how much one time step can stretch the state through that gate's pre-activation."""
    import numpy as np

    value = np.asarray(recurrent_kernel, dtype=np.float64)
    names = GATES[direction.kind]
    blocks = len(names) - (1 if direction.kind == "LSTM" else 0)  # cell_output has no block
    if value.ndim != 2 or value.shape[1] % blocks:
        return {}
    width = value.shape[1] // blocks
    out = {}
    for k in range(blocks):
        block = value[:, k * width:(k + 1) * width]
        out[names[k]] = float(np.linalg.norm(block, 2)) if block.size and np.all(np.isfinite(block)) else float("nan")
    return out
