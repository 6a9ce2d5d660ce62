"""The instrumented training step: built and traced once, re-runnable from any saved state.

Every statistic is reduced inside one compiled ``tf.function`` (norms, means, fractions);
only scalars and per-unit vectors leave the graph, never whole activations or gradients.
``snapshot``/``restore`` put the weights and the optimizer back, and ``set_learning_rate``
changes a value the graph reads, so a later stage can re-run the same steps with other
weights, batches or learning rates without retracing.
"""

from __future__ import annotations

import numpy as np

from stalldoc.facts import RELU_FAMILY, SATURATING
from stalldoc.probe.instrument import (
    SATURATION_GAIN,
    InstrumentedModel,
    activation_name,
    family_of,
    fresh_optimizer,
    learning_rate_of,
    local_gain,
)

# How many times each compiled function was traced, for the benchmark's retracing check
# (bench/run.py): one trace of the training step per diagnosis is expected.
TRACES: dict[str, int] = {}


class InstrumentedStep:
    """One model, one loss, a fresh copy of the model's optimizer, and two compiled functions:
    ``train`` (one measured step) and ``evaluate`` (the loss and predictions on a batch)."""

    def __init__(self, model, loss_fn) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.inst = InstrumentedModel(model)
        self.optimizer, self.optimizer_name = fresh_optimizer(model)
        self.tvars = list(model.trainable_variables)
        if self.tvars:
            self.optimizer.build(self.tvars)
        self.act_names = [activation_name(layer) for _, layer in self.inst.layers]
        self.families = [family_of(name) for name in self.act_names]
        self.input_dtypes = [str(getattr(t, "dtype", "float32")).replace("tf.", "") for t in model.inputs]
        self.none_grads: list[bool] | None = None  # decided when the step is traced
        self._train = self._build_train()
        self._evaluate = self._build_evaluate()

    # -- state -------------------------------------------------------------------------

    @property
    def learning_rate(self) -> float | None:
        return learning_rate_of(self.optimizer)

    def set_learning_rate(self, value: float) -> None:
        """Assign the optimizer's learning rate (a variable the traced step reads)."""
        self.optimizer.learning_rate.assign(value)

    def snapshot(self) -> list[np.ndarray]:
        """Every model and optimizer variable's value (BatchNorm statistics included)."""
        return [np.array(v.numpy(), copy=True) for v in self._state_variables()]

    def restore(self, state: list[np.ndarray]) -> None:
        for variable, value in zip(self._state_variables(), state):
            variable.assign(value)

    def _state_variables(self) -> list:
        return list(self.model.variables) + list(self.optimizer.variables)

    # -- running -----------------------------------------------------------------------

    def cast_inputs(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(a).astype(dt, copy=False) for a, dt in zip(xs, self.input_dtypes)]

    def train(self, xs: list[np.ndarray], y: np.ndarray) -> dict:
        """One measured training step; the statistics as NumPy values."""
        record = self._train(self.cast_inputs(xs), np.asarray(y, dtype=np.float32))
        return {k: (np.asarray(v) if not isinstance(v, list) else [np.asarray(a) for a in v])
                for k, v in record.items()}

    def evaluate(self, xs: list[np.ndarray], y: np.ndarray, *, training: bool = False) -> tuple[float, np.ndarray]:
        """The loss on a batch (no update), and the model's predictions there."""
        value, pred = self._evaluate(self.cast_inputs(xs), np.asarray(y, dtype=np.float32), training)
        return float(value), np.asarray(pred)

    # -- the compiled functions ----------------------------------------------------------

    def scalar_loss(self, y, pred):
        import tensorflow as tf

        return tf.reduce_mean(tf.cast(self.loss_fn(y, pred), tf.float32))

    def _build_train(self):
        import tensorflow as tf

        model, tvars, optimizer, inst = self.model, self.tvars, self.optimizer, self.inst

        @tf.function(reduce_retracing=True, autograph=False)
        def train_step(x, y):
            with tf.GradientTape() as tape:
                outs, extras = inst(x, training=True)
                value = self.scalar_loss(y, outs[0])
                if model.losses:
                    value = value + tf.add_n([tf.cast(v, tf.float32) for v in model.losses])
            grads = tape.gradient(value, tvars)
            # Which gradients the tape returns as None is structural: decided here, at trace time.
            self.none_grads = [g is None for g in grads]
            TRACES["train_step"] = TRACES.get("train_step", 0) + 1
            zero = tf.constant(0.0)
            grad_norms = [tf.norm(g) if g is not None else zero for g in grads]
            grad_abs = [tf.reduce_mean(tf.abs(g)) if g is not None else zero for g in grads]
            weight_norms = [tf.norm(v) for v in tvars]
            # Gate statistics of recurrent layers: outside the tape, with this forward pass's weights.
            recurrent = inst.recurrent_stats()
            before = [tf.identity(v) for v in tvars]
            pairs = [(g, v) for g, v in zip(grads, tvars) if g is not None]
            if pairs:
                optimizer.apply_gradients(pairs)
            update_norms = [tf.norm(v - b) for v, b in zip(tvars, before)]
            means, stds, sats, gains, active = self._layer_stats(extras)
            first_rms = zero
            if inst.first_weighted_input is not None:
                first_rms = tf.sqrt(tf.reduce_mean(tf.square(tf.cast(extras[inst.first_weighted_input], tf.float32))))
            return {
                "loss": value,
                "grad_norm": _stack(grad_norms),
                "grad_abs": _stack(grad_abs),
                "weight_norm": _stack(weight_norms),
                "update_norm": _stack(update_norms),
                "mean": _stack(means),
                "std": _stack(stds),
                "sat": _stack(sats),
                "gain": _stack(gains),
                "active": active,
                "first_rms": first_rms,
                "pred": tf.stack(_prediction_stats(y, outs[0])),
                "rnn": recurrent,
            }

        return train_step

    def _build_evaluate(self):
        import tensorflow as tf

        model = self.model

        # The model alone (no per-layer outputs), compiled, so intermediate activations are
        # freed as they are consumed (an eager call holds them all: +450 MiB peak on
        # MobileNetV2 at batch 8).
        @tf.function(reduce_retracing=True, autograph=False)
        def evaluate(x, y, training):
            out = model(x[0] if len(x) == 1 else x, training=training)
            out = out[0] if isinstance(out, (list, tuple)) else out
            return self.scalar_loss(y, out), out

        return evaluate

    def _layer_stats(self, extras):
        import tensorflow as tf

        means, stds, sats, gains, active = [], [], [], [], []
        for tensor, fam, act in zip(extras[: len(self.families)], self.families, self.act_names):
            t = tf.cast(tensor, tf.float32)
            # One mean, one squared deviation: the same values as reduce_mean + reduce_std,
            # which compute the mean twice and |x - mean| before squaring it.
            mean, variance = tf.nn.moments(t, axes=list(range(len(t.shape))))
            means.append(mean)
            stds.append(tf.sqrt(variance))
            if fam == SATURATING:
                # Local derivative relative to its peak: tanh 1 - t^2; sigmoid/softmax s(1-s), peak 1/4.
                gain = tf.clip_by_value(local_gain(t, act), 0.0, 1.0)
                sats.append(tf.reduce_mean(tf.cast(gain < SATURATION_GAIN, tf.float32)))
                gains.append(tf.reduce_mean(gain))
            elif fam == RELU_FAMILY:
                axes = list(range(len(t.shape) - 1))
                # A unit passes a gradient where its output is on the slope: relu6 is flat at 6 too.
                on = (t > 0.0) & (t < 6.0) if act == "relu6" else t > 0.0
                active.append(tf.reduce_mean(tf.cast(on, tf.float32), axis=axes))
        return means, stds, sats, gains, active


def _stack(values):
    import tensorflow as tf

    return tf.stack(values) if values else tf.zeros([0])


def _prediction_stats(y, pred):
    """Norms and cosines of predictions against targets over the last axis, in the graph."""
    import tensorflow as tf

    pred = tf.cast(pred, tf.float32)
    if y.shape[1:] != pred.shape[1:] or len(pred.shape) < 2:
        nan = tf.constant(np.nan, tf.float32)
        return [nan] * 5 + [tf.reduce_min(pred), tf.reduce_max(pred), nan]
    last = pred.shape[-1]
    p = tf.reshape(pred, [-1, last])
    t = tf.reshape(y, [-1, last])
    pn = tf.norm(p, axis=-1)
    tn = tf.norm(t, axis=-1)
    cos = tf.reduce_sum(p * t, axis=-1) / tf.maximum(pn * tn, 1e-12)
    return [tf.reduce_mean(pn), tf.reduce_mean(tn), tf.reduce_mean(cos), tf.reduce_min(cos),
            tf.reduce_max(cos), tf.reduce_min(pred), tf.reduce_max(pred),
            tf.reduce_mean(tf.cast(pn < 1e-12, tf.float32))]
