"""The instrumented training step: built and traced once, re-runnable from any saved state.

Every statistic is reduced inside one compiled ``tf.function`` (norms, means, fractions);
only scalars and per-unit vectors leave the graph, never whole activations or gradients.
``snapshot``/``restore`` put the weights and the optimizer back, and ``set_learning_rate``
changes a value the graph reads, so a later stage can re-run the same steps with other
weights, batches or learning rates without retracing.

A model built under a ``tf.distribute`` strategy (not the default one) is probed inside it:
the optimizer is created in ``strategy.scope()``, each step runs once per replica on its
slice of the global batch (``strategy.run``), and the statistics are reduced across replicas
in the step (stalldoc.probe.distribute). The default strategy's step is the plain one.
"""

from __future__ import annotations

from contextlib import nullcontext

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
from stalldoc.probe.reductions import ColumnGroup, TensorSums

# How many times each compiled function was traced, for the benchmark's retracing check
# (bench/run.py): one trace of the training step per diagnosis is expected.
TRACES: dict[str, int] = {}


class InstrumentedStep:
    """One model, one loss, a fresh copy of the model's optimizer, and two compiled functions:
    ``train`` (one measured step) and ``evaluate`` (the loss and predictions on a batch).

    A multi-output model has one loss per output (``loss_fn`` a list, with ``weights``): the
    steps minimize the weighted total, as ``fit`` does, and each output's own loss is measured;
    its targets are then a list of arrays, one per output."""

    def __init__(self, model, loss_fn, weights: list[float] | None = None) -> None:
        from stalldoc.probe.distribute import model_strategy, worker_count

        self.model = model
        self.loss_fn = loss_fn
        self.output_losses = list(loss_fn) if isinstance(loss_fn, (list, tuple)) else None
        self.weights = [float(w) for w in weights] if weights is not None else \
            [1.0] * len(self.output_losses or [loss_fn])
        # None: the default strategy, one device, the plain step.
        self.strategy = model_strategy(model)
        self.replicas = self.strategy.num_replicas_in_sync if self.strategy is not None else 1
        self.workers = worker_count(self.strategy) if self.strategy is not None else 1
        self._gather = None  # agreed()'s compiled gather, across workers
        with self.scope():
            self.inst = InstrumentedModel(model)
            self.optimizer, self.optimizer_name = fresh_optimizer(model)
            self.tvars = list(model.trainable_variables)
            if self.tvars:
                self.optimizer.build(self.tvars)
        self.act_names = [activation_name(layer) for _, layer in self.inst.layers]
        self.families = [family_of(name) for name in self.act_names]
        self.input_dtypes = [str(getattr(t, "dtype", "float32")).replace("tf.", "") for t in model.inputs]
        self.none_grads: list[bool] | None = None  # decided when the step is traced
        # Whether Keras' cross-entropies can read logits behind the output (a sigmoid/softmax
        # that keeps them), as they do in fit: also structural, decided at trace time.
        self.output_carries_logits: bool | None = None
        self.eval_batch: int | None = None  # the probe's batch: evaluations run in chunks of it
        self._record = PackedRecord()
        self._train = self._build_train()
        self._evaluate = self._build_evaluate()

    def scope(self):
        """The model's strategy's scope (nothing for the default strategy)."""
        return self.strategy.scope() if self.strategy is not None else nullcontext()

    def agreed(self, value: float) -> float:
        """``value`` as every worker of a multi-worker strategy sees it (the largest), so that
        decisions taken on it (a time budget) are the same everywhere; unchanged otherwise."""
        if self.workers < 2:
            return value
        import tensorflow as tf

        from stalldoc.probe.distribute import AcrossReplicas

        strategy = self.strategy
        if self._gather is None:
            across = AcrossReplicas(self.replicas)
            self._gather = tf.function(lambda v: strategy.run(across.gather, args=(v,)), autograph=False)
        gathered = self._gather(tf.constant(value, tf.float32))
        return float(np.max(strategy.experimental_local_results(gathered)[0]))

    # -- state -------------------------------------------------------------------------

    @property
    def learning_rate(self) -> float | None:
        return learning_rate_of(self.optimizer)

    def set_learning_rate(self, value: float) -> None:
        """Assign the optimizer's learning rate (a variable the traced step reads)."""
        self.optimizer.learning_rate.assign(value)

    def snapshot(self) -> list[np.ndarray]:
        """Every model and optimizer variable's value (BatchNorm statistics included). A value
        that is one number throughout (a fresh optimizer's moments, zero biases) is kept as that
        number broadcast to its shape: a read-only view, no memory (Adam's moments of ResNet50
        are 200 MB)."""
        return [_compact(np.array(v.numpy(), copy=True)) for v in self._state_variables()]

    def restore(self, state: list[np.ndarray]) -> None:
        for variable, value in zip(self._state_variables(), state):
            variable.assign(value)

    def values_in(self, state: list[np.ndarray], variables: list) -> list[np.ndarray]:
        """The arrays a ``snapshot`` holds for ``variables`` (some of the state's variables)."""
        position = {id(v): k for k, v in enumerate(self._state_variables())}
        return [state[position[id(v)]] for v in variables]

    def _state_variables(self) -> list:
        return list(self.model.variables) + list(self.optimizer.variables)

    # -- running -----------------------------------------------------------------------

    def cast_inputs(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(a).astype(dt, copy=False) for a, dt in zip(xs, self.input_dtypes)]

    def cast_targets(self, y):
        if self.output_losses is not None:
            return [np.asarray(a, dtype=np.float32) for a in y]
        return np.asarray(y, dtype=np.float32)

    def train(self, xs: list[np.ndarray], y) -> dict:
        """One measured training step; the statistics as NumPy values."""
        return self._record.unpack(self._train(self.cast_inputs(xs), self.cast_targets(y)))

    def evaluate(self, xs: list[np.ndarray], y, *, training: bool = False) -> tuple[float, np.ndarray]:
        """The loss on a batch (no update), and the model's predictions there (a list of
        arrays, one per output, for a multi-output model; the loss is then the weighted total)."""
        return self.evaluate_outputs(xs, y, training=training)[:2]

    def evaluate_outputs(self, xs: list[np.ndarray], y, *, training: bool = False) -> tuple[float, object, list[float]]:
        """``evaluate``, plus each output's own (unweighted) loss: [] for a single-output model.
        Rows beyond ``eval_batch`` are evaluated in chunks of that size (the probe's batch), so
        a large evaluation set costs no more memory than a training step; the loss is the mean
        over all rows (a training-mode BatchNormalization normalizes each chunk, as a step does)."""
        xs, y = self.cast_inputs(xs), self.cast_targets(y)
        rows = len(y[0] if self.output_losses is not None else y)
        size = self.eval_batch if self.eval_batch and rows > self.eval_batch else max(rows, 1)
        values, part_values, preds = [], [], []
        for start in range(0, max(rows, 1), size):
            chunk = slice(start, start + size)
            value, parts, pred = self._evaluate([a[chunk] for a in xs],
                                                [a[chunk] for a in y] if self.output_losses is not None else y[chunk],
                                                training)
            values.append(float(value))
            part_values.append(np.asarray(parts, dtype=np.float64))
            preds.append([np.asarray(p) for p in pred] if self.output_losses is not None else np.asarray(pred))
        if len(values) == 1:
            value, parts, pred = values[0], part_values[0], preds[0]
        else:  # the mean over all rows: each chunk's mean weighted by its rows
            share = np.array([min(size, rows - start) for start in range(0, rows, size)], dtype=np.float64) / rows
            value = float(np.dot(share, values))
            parts = share @ np.stack(part_values)
            pred = ([np.concatenate(p) for p in zip(*preds)] if self.output_losses is not None
                    else np.concatenate(preds))
        if self.output_losses is None:
            return value, pred, []
        return value, pred, [float(v) for v in parts]

    # -- the compiled functions ----------------------------------------------------------

    def scalar_loss(self, y, pred, output: int | None = None):
        """The loss as a scalar; for a multi-output model, output ``output``'s own loss."""
        import tensorflow as tf

        fn = self.loss_fn if self.output_losses is None else self.output_losses[output or 0]
        return tf.reduce_mean(tf.cast(fn(y, pred), tf.float32))

    def objective(self, y, outs):
        """(the loss the steps minimize, each output's own loss): the weighted total of the
        outputs' losses for a multi-output model (as ``fit``), else the one loss and []."""
        import tensorflow as tf

        if self.output_losses is None:
            return self.scalar_loss(y, outs[0]), []
        parts = [self.scalar_loss(t, p, k) for k, (t, p) in enumerate(zip(y, outs))]
        return tf.add_n([w * v for w, v in zip(self.weights, parts)]), parts

    def _build_train(self):
        import tensorflow as tf

        if self.strategy is None:
            @tf.function(reduce_retracing=True, autograph=False)
            def train_step(x, y):
                TRACES["train_step"] = TRACES.get("train_step", 0) + 1
                return self._record.pack(self._measured_step(x, y, None))

            return train_step

        from stalldoc.probe.distribute import AcrossReplicas

        strategy, across = self.strategy, AcrossReplicas(self.replicas)

        @tf.function(reduce_retracing=True, autograph=False)
        def distributed_train_step(x, y):
            TRACES["train_step"] = TRACES.get("train_step", 0) + 1

            def replica_step(x, y):
                xs, ys = self._replica_slice(x, y)
                return self._measured_step(xs, ys, across)

            record = strategy.run(replica_step, args=(x, y))
            # Reduced in the step: every replica holds the same values.
            return self._record.pack(tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], record))

        return distributed_train_step

    def _replica_slice(self, x, y):
        """This replica's contiguous share of the global batch (replica 0 first)."""
        import tensorflow as tf

        rid = tf.distribute.get_replica_context().replica_id_in_sync_group
        first = tf.nest.flatten(y)[0]
        rows = first.shape[0] // self.replicas if first.shape[0] is not None else tf.shape(first)[0] // self.replicas

        def part(t):
            return t[rid * rows: (rid + 1) * rows]

        return [part(a) for a in x], tf.nest.map_structure(part, y)

    def _measured_step(self, x, y, across):
        """One training step and its statistics; ``across`` (AcrossReplicas) reduces them over
        the replicas of a strategy, None on one device."""
        import tensorflow as tf

        model, tvars, optimizer, inst = self.model, self.tvars, self.optimizer, self.inst
        # A loss-scaled optimizer (mixed_float16's LossScaleOptimizer, or loss_scale_factor)
        # expects the gradients of the scaled loss, as fit gives them, and unscales them itself;
        # the statistics are the unscaled gradients'.
        scale = loss_scale(optimizer)
        with tf.GradientTape() as tape:
            outs, extras = inst(x, training=True)
            value, parts = self.objective(y, outs)
            if model.losses:
                value = value + tf.add_n([tf.cast(v, tf.float32) for v in model.losses])
            scaled_value = value if scale is None else value * scale
        grads = tape.gradient(scaled_value, tvars)
        if scale is not None:
            grads = [None if g is None else _scaled(g, 1.0 / scale) for g in grads]
        # Which gradients the tape returns as None is structural: decided here, at trace time.
        self.none_grads = [g is None for g in grads]
        self.output_carries_logits = carries_logits(outs[0])
        if across is not None:
            # The global batch's loss and gradient: the means over the replicas' equal slices.
            value = across.mean(value)
            parts = across.mean(parts) if parts else parts
            reduced = iter(across.mean([g for g in grads if g is not None]))
            grads = [None if g is None else next(reduced) for g in grads]
        zero = tf.constant(0.0)
        # Per-variable norms, small variables of one shape stacked (stalldoc.probe.reductions).
        grad_sums = TensorSums(grads)
        grad_stacks = grad_sums.stacks(grads)
        grad_norm = grad_sums.norms(grads, grad_stacks)
        grad_abs = grad_sums.mean_abs(grads, grad_stacks)
        weight_sums = TensorSums(tvars)
        stacks_before = weight_sums.stacks(tvars)  # read before the update: copies
        weight_norm = weight_sums.norms(tvars, stacks_before)
        before = {i: tf.identity(tvars[i]) for i in weight_sums.alone}
        # Gate statistics of recurrent layers: outside the tape, with this forward pass's weights
        # (under a strategy, means over the replicas' slices).
        recurrent = inst.recurrent_stats()
        if across is not None and recurrent:
            recurrent = across.mean(recurrent)
        pairs = [(g, v) for g, v in zip(grads, tvars) if g is not None]
        if scale is not None:  # scaled back: the optimizer divides by its scale (a power of two: exact)
            pairs = [(_scaled(g, scale), v) for g, v in pairs]
        if pairs:
            if across is not None:
                # The optimizer sums the replicas' gradients: each gives its share of the mean.
                pairs = [(_scaled(g, 1.0 / self.replicas), v) for g, v in pairs]
            optimizer.apply_gradients(pairs)
        changes = [tvars[i] - before[i] if i in before else None for i in range(len(tvars))]
        stacked_changes = [after - b for after, b in zip(weight_sums.stacks(tvars), stacks_before)]
        update_norm = weight_sums.norms(changes, stacked_changes)
        means, stds, sats, gains, active = self._layer_stats(extras, across)
        first_rms = zero
        if inst.first_weighted_input is not None:
            mean_square = tf.reduce_mean(tf.square(tf.cast(extras[inst.first_weighted_input], tf.float32)))
            first_rms = tf.sqrt(mean_square if across is None else across.mean(mean_square))
        if self.output_losses is None:
            pred = tf.stack(_prediction_stats(y, outs[0]))
            if across is not None:
                pred = _combined_prediction_stats(across.gather(pred))
        else:  # one row of statistics per output
            rows = [tf.stack(_prediction_stats(t, p)) for t, p in zip(y, outs)]
            if across is not None:
                rows = [_combined_prediction_stats(across.gather(r)) for r in rows]
            pred = tf.stack(rows)
        record = {
            "loss": value,
            "grad_norm": grad_norm,
            "grad_abs": grad_abs,
            "weight_norm": weight_norm,
            "update_norm": update_norm,
            "mean": means,
            "std": stds,
            "sat": sats,
            "gain": gains,
            "active": active,
            "first_rms": first_rms,
            "pred": pred,
            "rnn": recurrent,
        }
        if self.output_losses is not None:
            record["output_loss"] = tf.stack(parts)  # each output's own loss
        return record

    def _build_evaluate(self):
        import tensorflow as tf

        model = self.model

        def loss_and_output(x, y, training):
            out = model(x[0] if len(x) == 1 else x, training=training)
            if self.output_losses is not None:
                import keras

                outs = keras.tree.flatten(out)  # model.outputs' order (dict outputs: sorted keys)
                value, parts = self.objective(y, outs)
                return value, tf.stack(parts), outs
            out = out[0] if isinstance(out, (list, tuple)) else out
            return self.scalar_loss(y, out), tf.zeros([0]), out

        if self.strategy is None:
            # The model alone (no per-layer outputs), compiled, so intermediate activations are
            # freed as they are consumed (an eager call holds them all: +450 MiB peak on
            # MobileNetV2 at batch 8).
            return tf.function(loss_and_output, reduce_retracing=True, autograph=False)

        from stalldoc.probe.distribute import AcrossReplicas

        strategy, across = self.strategy, AcrossReplicas(self.replicas)

        @tf.function(reduce_retracing=True, autograph=False)
        def distributed_evaluate(x, y, training):
            def replica_evaluate(x, y):
                value, parts, out = loss_and_output(*self._replica_slice(x, y), training)
                parts = across.mean(parts) if self.output_losses is not None else parts
                return across.mean(value), parts, tf.nest.map_structure(across.concat, out)

            result = strategy.run(replica_evaluate, args=(x, y))
            return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], result)

        return distributed_evaluate

    def _layer_stats(self, extras, across=None):
        """Per measured layer: output mean and std; per saturating layer, the fraction of
        saturated units and the mean local gain; per ReLU-family layer, each unit's active rate.
        The ``[batch, units]`` outputs are measured together on their concatenation
        (stalldoc.probe.reductions.ColumnGroup), other outputs one by one."""
        import tensorflow as tf

        tensors = list(extras[: len(self.families)])
        if not tensors:
            empty = tf.zeros([0])
            return empty, empty, empty, empty, []
        columnar = [i for i, t in enumerate(tensors) if ColumnGroup.eligible(t)]
        if len(columnar) < 2:
            columnar = []
        alone = [i for i in range(len(tensors)) if i not in set(columnar)]

        mean_parts, variance_parts = [], []
        if columnar:
            group = ColumnGroup(tensors, columnar)
            mean, variance = group.moments(group.columns(tensors))
            mean_parts.append(mean)
            variance_parts.append(variance)
        for i in alone:
            t = tf.cast(tensors[i], tf.float32)
            # One mean, one squared deviation: the same values as reduce_mean + reduce_std.
            mean, variance = tf.nn.moments(t, axes=list(range(len(t.shape))))
            mean_parts.append(tf.reshape(mean, [1]))
            variance_parts.append(tf.reshape(variance, [1]))
        means = _in_order(mean_parts, columnar + alone)
        variances = _in_order(variance_parts, columnar + alone)

        saturating = [i for i, fam in enumerate(self.families) if fam == SATURATING]
        sats, gains = self._saturation(tensors, saturating, set(columnar))
        relu = [i for i, fam in enumerate(self.families) if fam == RELU_FAMILY]
        active = self._active_rates(tensors, relu, set(columnar))
        if across is not None:
            means, variances = across.moments(means, variances)
            sats, gains, active = (across.mean(v) if _nonempty(v) else v for v in (sats, gains, active))
        return means, tf.sqrt(variances), sats, gains, active

    def _saturation(self, tensors, saturating: list[int], columnar: set[int]):
        """(saturated fraction, mean local gain) per saturating layer, in order: layers of one
        elementwise activation in the column group together (softmax's gain is per row: alone)."""
        import tensorflow as tf

        if not saturating:
            return tf.zeros([0]), tf.zeros([0])
        groups: dict[str, list[int]] = {}
        alone = []
        for i in saturating:
            act = self.act_names[i]
            if i in columnar and act != "softmax":
                groups.setdefault(act, []).append(i)
            else:
                alone.append(i)
        sat_parts, gain_parts, placed = [], [], []
        for act, members in groups.items():
            group = ColumnGroup(tensors, members)
            gain = tf.clip_by_value(local_gain(group.columns(tensors), act), 0.0, 1.0)
            sat_parts.append(group.layer_means(tf.reduce_mean(tf.cast(gain < SATURATION_GAIN, tf.float32), axis=0)))
            gain_parts.append(group.layer_means(tf.reduce_mean(gain, axis=0)))
            placed += members
        for i in alone:
            # Local derivative relative to its peak: tanh 1 - t^2; sigmoid/softmax s(1-s), peak 1/4.
            gain = tf.clip_by_value(local_gain(tf.cast(tensors[i], tf.float32), self.act_names[i]), 0.0, 1.0)
            sat_parts.append(tf.reshape(tf.reduce_mean(tf.cast(gain < SATURATION_GAIN, tf.float32)), [1]))
            gain_parts.append(tf.reshape(tf.reduce_mean(gain), [1]))
            placed.append(i)
        rank = {i: k for k, i in enumerate(saturating)}
        positions = [rank[i] for i in placed]
        return _in_order(sat_parts, positions), _in_order(gain_parts, positions)

    def _active_rates(self, tensors, relu: list[int], columnar: set[int]) -> list:
        """Per ReLU-family layer, in order, each unit's active rate over the batch (and, for a
        conv layer, its positions): where its output is on the slope (relu6 is flat at 6 too)."""
        import tensorflow as tf

        rates: dict[int, object] = {}
        members = [i for i in relu if i in columnar]
        if len(members) > 1:
            group = ColumnGroup(tensors, members)
            t = group.columns(tensors)
            on = t > 0.0
            capped = np.array([self.act_names[i] == "relu6" for i in members])
            if capped.any():
                uncapped = np.repeat(~capped, group.units)
                on = on & ((t < 6.0) | uncapped)
            rates.update(zip(members, group.split(tf.reduce_mean(tf.cast(on, tf.float32), axis=0))))
        for i in relu:
            if i not in rates:
                t = tf.cast(tensors[i], tf.float32)
                on = (t > 0.0) & (t < 6.0) if self.act_names[i] == "relu6" else t > 0.0
                rates[i] = tf.reduce_mean(tf.cast(on, tf.float32), axis=list(range(len(t.shape) - 1)))
        return [rates[i] for i in relu]


def _in_order(parts: list, positions: list[int]):
    """concat(parts) (results for ``positions``, in that order) rearranged into position order."""
    import tensorflow as tf

    joined = tf.concat(parts, 0) if len(parts) > 1 else parts[0]
    if positions == sorted(positions):
        return joined
    return tf.gather(joined, np.argsort(np.array(positions)).astype(np.int32))


def _nonempty(value) -> bool:
    return bool(value) if isinstance(value, list) else value.shape[0] != 0


class PackedRecord:
    """A step's statistics leave the graph as one float32 vector, not one output per statistic:
    each output tensor costs the call a conversion (a 50-layer MLP's record had 60). The layout,
    fixed when the step is traced, unpacks the vector into the record: a dict of NumPy arrays
    and lists of them."""

    def __init__(self) -> None:
        # (key, number of list items or None for one array, [(start, stop, shape)]) per entry
        self.layout: list[tuple[str, int | None, list[tuple[int, int, tuple[int, ...]]]]] = []

    def pack(self, record: dict):
        """In the traced step: the record as one vector (every statistic's shape is static)."""
        import tensorflow as tf

        self.layout, leaves, offset = [], [], 0
        for key, value in record.items():
            items = value if isinstance(value, (list, tuple)) else [value]
            slices = []
            for leaf in items:
                shape = tuple(int(d) for d in leaf.shape)  # a None dimension fails loudly here
                size = int(np.prod(shape, dtype=np.int64))
                slices.append((offset, offset + size, shape))
                leaves.append(tf.reshape(tf.cast(leaf, tf.float32), [-1]))
                offset += size
            self.layout.append((key, len(items) if isinstance(value, (list, tuple)) else None, slices))
        return tf.concat(leaves, 0) if leaves else tf.zeros([0])

    def unpack(self, value) -> dict:
        vector = np.asarray(value)
        record = {}
        for key, items, slices in self.layout:
            arrays = [vector[start:stop].reshape(shape) for start, stop, shape in slices]
            record[key] = arrays if items is not None else arrays[0]
        return record


def _compact(value: np.ndarray) -> np.ndarray:
    """``value``, or its one repeated element broadcast to its shape when it has no other."""
    if value.size > 1 and value.dtype.kind in "fciub":
        first = value.reshape(-1)[:1]
        if np.array_equal(value.reshape(-1), np.broadcast_to(first, (value.size,)), equal_nan=value.dtype.kind in "fc"):
            return np.broadcast_to(first.reshape(()), value.shape)
    return value


def carries_logits(output) -> bool:
    """What Keras' TensorFlow cross-entropies check before using an output (``_get_logits``):
    the logits kept by a sigmoid/softmax activation, or a Sigmoid/Softmax op in the graph."""
    if hasattr(output, "_keras_logits"):
        return True
    op = getattr(output, "op", None)
    return getattr(op, "type", None) in ("Sigmoid", "Softmax")


def loss_scale(optimizer):
    """The factor a loss-scaled optimizer expects the loss multiplied by (a tensor read at
    every step: a LossScaleOptimizer's scale changes), None when it expects none."""
    import tensorflow as tf

    dynamic = getattr(optimizer, "dynamic_scale", None)
    if dynamic is not None:
        return tf.cast(tf.convert_to_tensor(dynamic), tf.float32)
    factor = getattr(optimizer, "loss_scale_factor", None)
    return tf.constant(float(factor), tf.float32) if factor else None


def _scaled(grad, factor):
    import tensorflow as tf

    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values * factor, grad.indices, grad.dense_shape)
    return grad * factor


def _combined_prediction_stats(per_replica):
    """``_prediction_stats`` of the global batch from the replicas' (rows: replicas): means of
    means (equal slices), the minimum of minima, the maximum of maxima."""
    import tensorflow as tf

    mean = tf.reduce_mean(per_replica, axis=0)
    low = tf.reduce_min(per_replica, axis=0)
    high = tf.reduce_max(per_replica, axis=0)
    return tf.stack([mean[0], mean[1], mean[2], low[3], high[4], low[5], high[6], mean[7]])


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
