"""Which layers to measure and how: activation families, local gains, and a functional
copy of the model that also returns every measured layer's output (no recomputation)."""

from __future__ import annotations

import numpy as np

from stalldoc.facts import activation_family as family_of  # noqa: F401 - the probe's name for it

# An output is saturated when the activation's local derivative there is below this share
# of its peak (documented in the saturated-activation detector).
SATURATION_GAIN = 0.05


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


def local_gain(t, act: str | None):
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


def count_params(weights) -> int:
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


class InstrumentedModel:
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


def fresh_optimizer(model):
    import keras

    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return keras.optimizers.Adam(), "Adam (default: the model has no compiled optimizer)"
    try:
        fresh = optimizer.__class__.from_config(optimizer.get_config())
        return fresh, optimizer.__class__.__name__
    except Exception:  # noqa: BLE001
        return keras.optimizers.Adam(), "Adam (the model's optimizer could not be copied)"


def learning_rate_of(optimizer) -> float | None:
    try:
        return float(np.asarray(optimizer.learning_rate))
    except Exception:  # noqa: BLE001 - a schedule: report its value at step 0
        try:
            return float(optimizer.learning_rate(0))
        except Exception:  # noqa: BLE001
            return None


