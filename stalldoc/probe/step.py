"""The probe: instrumented GradientTape training steps that turn a model into Facts.

Every statistic is reduced inside one compiled ``tf.function`` (norms, means, fractions);
only scalars and per-unit vectors leave the graph, never whole activations or gradients.
The step is traced once and reused for every step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stalldoc.facts import (
    RELU_FAMILY,
    SATURATING,
    ArrayFacts,
    Facts,
    LayerFacts,
    LossFacts,
    ModelFacts,
    PredictionFacts,
    VariableFacts,
)
from stalldoc.inputs.data import Dataset, probe_rows
from stalldoc.inputs.losses import ResolvedLoss

SATURATING_ACTIVATIONS = {"sigmoid", "tanh", "softmax", "hard_sigmoid", "hard_tanh"}
RELU_ACTIVATIONS = {"relu", "relu6"}
# An output is saturated when the activation's local derivative there is below this share
# of its peak (documented in the saturated-activation detector).
SATURATION_GAIN = 0.05
# How many times each compiled function was traced, for the benchmark's retracing check
# (bench/run.py): one trace per run_probe call is expected.
TRACES: dict[str, int] = {}


def activation_name(layer) -> str | None:
    import keras

    if isinstance(layer, keras.layers.ReLU):
        # ReLU(negative_slope > 0) is leaky and cannot die.
        return "relu" if not getattr(layer, "negative_slope", 0.0) else "leaky_relu"
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    fn = getattr(layer, "activation", None)
    if fn is None:
        return None
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # noqa: BLE001 - a custom activation without a registered name
        return getattr(fn, "__name__", None)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return name if isinstance(name, str) else None


def family_of(name: str | None) -> str | None:
    if name in SATURATING_ACTIVATIONS:
        return SATURATING
    if name in RELU_ACTIVATIONS:
        return RELU_FAMILY
    return None


def _local_gain(t, act: str | None):
    """The activation's local derivative relative to its peak, in the graph (1 linear, 0 flat).

    tanh: 1 - t^2. sigmoid: s(1 - s) / (1/4). hard_sigmoid/hard_tanh: 1 inside their linear
    part, 0 where clipped. softmax, per row: the trace of its Jacobian,
    1 - sum(p^2), over its value at the uniform distribution, 1 - 1/K — so a uniform
    1000-class softmax is not "saturated" for having small probabilities; a one-hot one is.
    """
    import tensorflow as tf

    if act == "hard_sigmoid":  # piecewise linear: full slope inside (0, 1), none at the clips
        return tf.cast((t > 0.0) & (t < 1.0), t.dtype)
    if act == "hard_tanh":
        return tf.cast(tf.abs(t) < 1.0, t.dtype)
    if act == "tanh":
        return 1.0 - tf.square(t)
    if act == "softmax" and t.shape[-1] is not None and t.shape[-1] > 1:
        k = float(t.shape[-1])
        return (1.0 - tf.reduce_sum(tf.square(t), axis=-1)) / (1.0 - 1.0 / k)
    return 4.0 * t * (1.0 - t)


def _count(weights) -> int:
    return int(sum(int(np.prod(w.shape)) for w in weights))


def _float_output(tensor) -> bool:
    dtype = getattr(tensor, "dtype", None)
    return dtype is not None and "float" in str(dtype)


def _own_nodes(model) -> set[int]:
    """Ids of the nodes of ``model``'s own graph (a Sequential model keeps it in ``_functional``)."""
    graph = getattr(model, "_functional", None) or model
    return {id(node) for nodes in (getattr(graph, "_nodes_by_depth", None) or {}).values() for node in nodes}


def _node_in(layer, own: set[int]):
    """The first call of ``layer`` inside the model's own graph, None if unknown.

    ``layer.output`` is the layer's first call, which need not be in the model's graph: a
    Sequential model built layer by layer (every one loaded from a file) leaves layer i with
    one call per intermediate graph, and outputs taken from those graphs made the instrumented
    model recompute the network once per layer (quadratic in depth)."""
    return next((node for node in getattr(layer, "_inbound_nodes", []) if id(node) in own), None)


def _single(tensors):
    return tensors[0] if len(tensors) == 1 else list(tensors)


class _Instrumented:
    """The model plus one functional model that also returns the layers worth measuring."""

    def __init__(self, model):
        import keras

        self.model = model
        self.layers = []  # (index, layer) whose outputs are collected
        self.first_weighted_input = None
        outputs = list(model.outputs)
        extra = []
        own = _own_nodes(model)
        nodes = {}
        for index, layer in enumerate(model.layers):
            if isinstance(layer, keras.layers.InputLayer):
                continue
            nodes[index] = node = _node_in(layer, own)
            try:
                out = _single(node.outputs) if node is not None else layer.output
            except Exception:  # noqa: BLE001 - shared layers have no single output
                continue
            if isinstance(out, (list, tuple)) or not _float_output(out):
                continue
            self.layers.append((index, layer))
            extra.append(out)
        first = next(((i, layer) for i, layer in self.layers if layer.trainable_weights), None)
        if first is not None:
            try:
                node = nodes[first[0]]
                tensor = _single(node.input_tensors) if node is not None else first[1].input
                if not isinstance(tensor, (list, tuple)) and _float_output(tensor):
                    self.first_weighted_input = len(extra)
                    extra.append(tensor)
            except Exception:  # noqa: BLE001
                pass
        self.n_outputs = len(outputs)
        try:
            self.graph = keras.Model(model.inputs, outputs + extra)
        except Exception:  # noqa: BLE001 - e.g. subclassed models: measure gradients only
            self.graph = None
            self.layers = []
            self.first_weighted_input = None

    def __call__(self, inputs, training):
        if self.graph is None:
            out = self.model(inputs[0] if len(inputs) == 1 else inputs, training=training)
            return (out if isinstance(out, (list, tuple)) else [out]), []
        outs = self.graph(inputs, training=training)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        return outs[: self.n_outputs], outs[self.n_outputs:]


def _fresh_optimizer(model):
    import keras

    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return keras.optimizers.Adam(), "Adam (default: the model has no compiled optimizer)"
    try:
        fresh = optimizer.__class__.from_config(optimizer.get_config())
        return fresh, optimizer.__class__.__name__
    except Exception:  # noqa: BLE001
        return keras.optimizers.Adam(), "Adam (the model's optimizer could not be copied)"


def _learning_rate(optimizer) -> float | None:
    try:
        return float(np.asarray(optimizer.learning_rate))
    except Exception:  # noqa: BLE001 - a schedule: report its value at step 0
        try:
            return float(optimizer.learning_rate(0))
        except Exception:  # noqa: BLE001
            return None


def run_probe(model, dataset: Dataset, loss: ResolvedLoss, **kwargs) -> Facts:
    """Run the instrumented steps. Each call traces its own step function, which TensorFlow
    reports as "retracing" when a program diagnoses several models: that note is not for the
    user, so TensorFlow's logger is held at ERROR for the duration."""
    import tensorflow as tf

    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel("ERROR")
    try:
        return _run_probe(model, dataset, loss, **kwargs)
    finally:
        tf_logger.setLevel(level)


def _run_probe(
    model,
    dataset: Dataset,
    loss: ResolvedLoss,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    input_facts: list[ArrayFacts],
    target_facts: ArrayFacts,
    model_path: str | None = None,
    notes: list[str] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Facts:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    inst = _Instrumented(model)
    optimizer, optimizer_name = _fresh_optimizer(model)
    tvars = list(model.trainable_variables)
    var_layer = {}
    for index, layer in enumerate(model.layers):
        for w in layer.trainable_weights:
            var_layer[id(w)] = (layer.name, index)
    if tvars:
        optimizer.build(tvars)

    samples = dataset.samples
    batch, indices = probe_rows(samples, steps=steps, batch_size=batch_size, seed=seed)
    input_dtypes = [getattr(t, "dtype", "float32") for t in model.inputs]

    def take(idx: np.ndarray):
        order = np.sort(idx)  # sorted reads are cheaper on memory-mapped arrays
        xs = [np.asarray(a[order]).astype(str(dt).replace("tf.", ""), copy=False)
              for a, dt in zip(dataset.inputs.values(), input_dtypes)]
        y = np.asarray(dataset.targets[order], dtype=np.float32)
        return xs, y  # always a list: the functional model's input structure

    act_names = [activation_name(layer) for _, layer in inst.layers]
    families = [family_of(name) for name in act_names]
    loss_fn = loss.fn

    def scalar_loss(y, pred):
        value = loss_fn(y, pred)
        return tf.reduce_mean(tf.cast(value, tf.float32))

    def layer_stats(extras):
        means, stds, sats, gains, active = [], [], [], [], []
        for tensor, fam, act in zip(extras[: len(families)], families, act_names):
            t = tf.cast(tensor, tf.float32)
            # One mean, one squared deviation: the same values as reduce_mean + reduce_std,
            # which compute the mean twice and |x - mean| before squaring it.
            mean, variance = tf.nn.moments(t, axes=list(range(len(t.shape))))
            means.append(mean)
            stds.append(tf.sqrt(variance))
            if fam == SATURATING:
                # Local derivative relative to its peak: tanh 1 - t^2; sigmoid/softmax s(1-s), peak 1/4.
                gain = tf.clip_by_value(_local_gain(t, act), 0.0, 1.0)
                sats.append(tf.reduce_mean(tf.cast(gain < SATURATION_GAIN, tf.float32)))
                gains.append(tf.reduce_mean(gain))
            elif fam == RELU_FAMILY:
                axes = list(range(len(t.shape) - 1))
                active.append(tf.reduce_mean(tf.cast(t > 0.0, tf.float32), axis=axes))
        return means, stds, sats, gains, active

    def prediction_stats(y, pred):
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

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            outs, extras = inst(x, training=True)
            value = scalar_loss(y, outs[0])
            if model.losses:
                value = value + tf.add_n([tf.cast(v, tf.float32) for v in model.losses])
        grads = tape.gradient(value, tvars)
        # Which gradients the tape returns as None is structural: decided here, at trace time.
        traced["none_grads"] = [g is None for g in grads]
        TRACES["train_step"] = TRACES.get("train_step", 0) + 1
        zero = tf.constant(0.0)
        grad_norms = [tf.norm(g) if g is not None else zero for g in grads]
        grad_abs = [tf.reduce_mean(tf.abs(g)) if g is not None else zero for g in grads]
        weight_norms = [tf.norm(v) for v in tvars]
        before = [tf.identity(v) for v in tvars]
        pairs = [(g, v) for g, v in zip(grads, tvars) if g is not None]
        if pairs:
            optimizer.apply_gradients(pairs)
        update_norms = [tf.norm(v - b) for v, b in zip(tvars, before)]
        means, stds, sats, gains, active = layer_stats(extras)
        first_rms = zero
        if inst.first_weighted_input is not None:
            first_rms = tf.sqrt(tf.reduce_mean(tf.square(tf.cast(extras[inst.first_weighted_input], tf.float32))))
        return {
            "loss": value,
            "grad_norm": tf.stack(grad_norms) if grad_norms else tf.zeros([0]),
            "grad_abs": tf.stack(grad_abs) if grad_abs else tf.zeros([0]),
            "weight_norm": tf.stack(weight_norms) if weight_norms else tf.zeros([0]),
            "update_norm": tf.stack(update_norms) if update_norms else tf.zeros([0]),
            "mean": tf.stack(means) if means else tf.zeros([0]),
            "std": tf.stack(stds) if stds else tf.zeros([0]),
            "sat": tf.stack(sats) if sats else tf.zeros([0]),
            "gain": tf.stack(gains) if gains else tf.zeros([0]),
            "active": active,
            "first_rms": first_rms,
            "pred": tf.stack(prediction_stats(y, outs[0])),
        }

    # The loss on a fixed batch before and after the steps: the model alone (no per-layer
    # outputs), compiled, so intermediate activations are freed as they are consumed (an eager
    # call holds them all: +450 MiB peak on MobileNetV2 at batch 8).
    @tf.function(reduce_retracing=True)
    def eval_loss(x, y):
        out = model(x[0] if len(x) == 1 else x, training=False)
        return scalar_loss(y, out[0] if isinstance(out, (list, tuple)) else out)

    # Called once: run eagerly, as tracing it would cost more than running it.

    def reference_losses(y):
        # The loss at a perfect prediction: its floor.
        return scalar_loss(y, tf.identity(y))

    eval_x, eval_y = take(indices[:batch])
    initial = float(eval_loss(eval_x, eval_y))
    try:
        floor = float(reference_losses(eval_y))
    except Exception:  # noqa: BLE001 - targets and outputs of different shapes/kinds
        floor = None
    traced: dict = {}
    records = []
    for step in range(steps):
        x, y = take(indices[batch * (step + 1): batch * (step + 2)])
        rec = train_step(x, y)
        records.append({k: (np.asarray(v) if not isinstance(v, list) else [np.asarray(a) for a in v])
                        for k, v in rec.items()})
        if on_step:
            on_step(step + 1)
    final = float(eval_loss(eval_x, eval_y))

    none_grads = traced.get("none_grads", [False] * len(tvars))

    def series(key: str) -> np.ndarray:
        return np.stack([r[key] for r in records]) if records else np.zeros((0, 0))

    grad_norm, grad_abs = series("grad_norm"), series("grad_abs")
    weight_norm, update_norm = series("weight_norm"), series("update_norm")
    variables = []
    for i, v in enumerate(tvars):
        layer_name, layer_index = var_layer.get(id(v), (v.path.split("/")[0], -1))
        wn = weight_norm[:, i]
        variables.append(VariableFacts(
            path=v.path, layer=layer_name, layer_index=layer_index,
            shape=tuple(int(s) for s in v.shape), grad_is_none=none_grads[i],
            grad_norm=grad_norm[:, i], grad_mean_abs=grad_abs[:, i], weight_norm=wn,
            update_ratio=update_norm[:, i] / np.maximum(wn, 1e-12),
        ))

    means, stds, sats, gains = series("mean"), series("std"), series("sat"), series("gain")
    layers = []
    s_i = r_i = 0
    measured = {index: k for k, (index, _) in enumerate(inst.layers)}
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        act = activation_name(layer)
        fam = family_of(act)
        lf = LayerFacts(name=layer.name, class_name=type(layer).__name__, index=index,
                        activation=act, family=fam, params=_count(layer.weights),
                        trainable_params=_count(layer.trainable_weights))
        k = measured.get(index)
        if k is not None and records:
            lf.output_mean, lf.output_std = means[:, k], stds[:, k]
            if fam == SATURATING:
                lf.saturated_fraction, lf.mean_gain = sats[:, s_i], gains[:, s_i]
                s_i += 1
            elif fam == RELU_FAMILY:
                lf.unit_active_rate = np.mean([r["active"][r_i] for r in records], axis=0)
                r_i += 1
        layers.append(lf)

    pred = series("pred")
    predictions = None
    if records:
        predictions = PredictionFacts(
            output_norm_mean=pred[:, 0], target_norm_mean=pred[:, 1], cosine_mean=pred[:, 2],
            cosine_min=pred[:, 3], cosine_max=pred[:, 4], output_min=float(np.min(pred[:, 5])),
            output_max=float(np.max(pred[:, 6])), zero_norm_output_fraction=float(np.mean(pred[:, 7])),
            zero_norm_output_per_step=pred[:, 7],
            output_shape=tuple(int(s) for s in model.outputs[0].shape[1:] if s is not None),
            target_shape=tuple(int(s) for s in dataset.targets.shape[1:]),
        )

    out_layer = model.layers[-1] if model.layers else None
    out_act = activation_name(out_layer) if out_layer is not None else None
    from stalldoc.inputs.losses import describe_compiled

    model_facts = ModelFacts(
        path=model_path, name=model.name, layers=len(model.layers),
        trainable_params=_count(model.trainable_weights),
        non_trainable_params=_count(model.non_trainable_weights),
        optimizer=optimizer_name, learning_rate=_learning_rate(optimizer),
        output_activation=out_act, output_family=family_of(out_act),
        compiled_loss=describe_compiled(model), notes=list(notes or []),
    )
    first_rms = float(np.median(series("first_rms"))) if (records and inst.first_weighted_input is not None) else None
    return Facts(
        model=model_facts, inputs=input_facts, targets=target_facts,
        loss=LossFacts(name=loss.name, source=loss.source, per_step=series("loss"),
                       initial=initial, final=final, floor=floor),
        layers=layers, variables=variables, steps=steps, batch_size=batch, seed=seed,
        predictions=predictions, first_weighted_input_rms=first_rms, data_path=dataset.path,
        samples=samples, notes=[loss.reason] + list(notes or []),
    )
