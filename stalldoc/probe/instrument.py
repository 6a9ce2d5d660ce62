"""Which layers to measure and how: activation families, local gains, and a functional
copy of the model that also returns every measured layer's output (no recomputation)."""

from __future__ import annotations

from dataclasses import dataclass

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


def graph_of(layer):
    """The functional graph a nested model runs (a Sequential model's ``_functional``), None for
    a plain layer or a subclassed model (whose inner calls have no symbolic graph)."""
    import keras
    from keras.src.models.functional import Functional

    if isinstance(layer, keras.Sequential):
        return getattr(layer, "_functional", None)
    if isinstance(layer, Functional) and getattr(layer, "_nodes_by_depth", None):
        return layer
    return None


@dataclass
class Entry:
    """One layer as the probe reports it: ``path`` is its name inside nested models
    (``base/block_3_expand_relu``); ``index`` orders every entry (nested ones included)."""

    path: str
    layer: object
    index: int
    node: object = None  # its first call in its own model's graph
    measured: bool = False


def flatten(model, prefix: str = "", start: int = 0, top: bool = True) -> tuple[list[Entry], int]:
    """Every layer of ``model`` with its path, nested functional/Sequential models replaced by
    their own layers (recursively); InputLayers only at the top, where they keep their index."""
    import keras

    entries: list[Entry] = []
    own = _own_nodes(model)
    index = start
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            if top:
                index += 1
            continue
        node = _node_in(layer, own)
        inner = graph_of(layer) if node is not None else None
        if inner is not None and layer.layers:
            sub, index = flatten(layer, f"{prefix}{layer.name}/", index + 1, top=False)
            entries.extend(sub)
            continue
        entries.append(Entry(path=prefix + layer.name, layer=layer, index=index, node=node))
        index += 1
    return entries, index


def variable_owners(layers) -> dict[int, tuple[str, int]]:
    """id(variable) -> (path, index) of the innermost layer holding it, for ``layers`` given as
    (layer, path, index); a subclassed model's or custom layer's tracked sublayers extend the
    path (``my_net/dense``)."""
    owners: dict[int, tuple[str, int]] = {}

    def visit(layer, path: str, index: int, depth: int) -> None:
        for w in layer.trainable_weights:
            owners[id(w)] = (path, index)
        if depth < 8:
            for sub in getattr(layer, "_layers", None) or []:
                visit(sub, f"{path}/{sub.name}", index, depth + 1)

    for layer, path, index in layers:
        visit(layer, path, index, 0)
    return owners


class _Tap:
    """Runs the model's graph the way ``Functional.call`` does, descending into nested
    functional/Sequential models instead of calling them, and keeps the outputs (and inputs)
    of the nodes it is asked for: every layer runs once, in one traced step."""

    def __init__(self, model, taps: set[int], inputs_of: set[int]):
        self.model = model
        self.taps = taps
        self.inputs_of = inputs_of

    def run(self, inputs, training):
        self.seen: dict[int, object] = {}
        self.seen_inputs: dict[int, object] = {}
        graph = graph_of(self.model) or self.model
        outs = self._execute(graph, inputs[0] if len(inputs) == 1 else list(inputs), training)
        return outs

    def _execute(self, graph, inputs, training):
        from keras.src import tree
        from keras.src.models.functional import operation_fn

        inputs = graph._standardize_inputs(inputs)
        values = {id(x): y for x, y in zip(graph.inputs, inputs)}
        by_depth = graph._nodes_by_depth
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                if any(id(x) not in values for x in node.input_tensors):
                    continue
                args, kwargs = node.arguments.fill_in(values)
                op = node.operation
                inner = graph_of(op)
                if inner is not None and op.layers:
                    outputs = self._nested(inner, op, args, kwargs, training)
                else:
                    outputs = operation_fn(op, training=training)(*args, **kwargs)
                key = id(node)
                if key in self.taps and key not in self.seen:
                    self.seen[key] = outputs
                if key in self.inputs_of and key not in self.seen_inputs:
                    self.seen_inputs[key] = args[0] if args else None
                for x, y in zip(node.outputs, tree.flatten(outputs)):
                    values[id(x)] = y
        return [values[id(x)] for x in graph.outputs]

    def _nested(self, inner, op, args, kwargs, training):
        """A nested model's call (``Functional.call``), run through its graph."""
        from keras import backend

        if "training" in getattr(op, "_call_context_args", ()) and training is not None:
            kwargs = {**kwargs, "training": training}
        inner_training = kwargs.get("training")
        if inner_training is None:
            inner_training = training
        inputs = args[0] if args else kwargs.get("inputs")
        mask = kwargs.get("mask")
        if mask is not None:
            from keras.src import tree

            for x, m in zip(tree.flatten(inputs), tree.flatten(mask)):
                if m is not None:
                    backend.set_keras_mask(x, m)
        outs = self._execute(inner, inputs, inner_training)
        return outs[0] if len(outs) == 1 else outs


class InstrumentedModel:
    """The model plus a way to run it that also returns the layers worth measuring, nested
    sub-models' layers included (``entries``)."""

    def __init__(self, model):
        self.model = model
        self.layers = []  # (entry index, layer) whose outputs are collected, in extras' order
        self.first_weighted_input = None
        self.entries: list[Entry] = []
        self.tap = None
        outputs = getattr(model, "outputs", None)
        if graph_of(model) is None or not outputs:  # e.g. subclassed models: measure gradients only
            self.n_outputs = 1
            return
        self.n_outputs = len(outputs)
        self.entries, _ = flatten(model)
        taps: list[int] = []
        for k, entry in enumerate(self.entries):
            node = entry.node
            if node is None or len(node.outputs) != 1 or not _float_output(node.outputs[0]):
                continue
            entry.measured = True
            self.layers.append((k, entry.layer))
            taps.append(id(node))
        self.taps = taps
        first = next((e for e in self.entries if e.measured and e.layer.trainable_weights), None)
        self.first_node = None
        if first is not None:
            tensor = _single(first.node.input_tensors)
            if not isinstance(tensor, (list, tuple)) and _float_output(tensor):
                self.first_node = id(first.node)
                self.first_weighted_input = len(taps)
        self.tap = _Tap(model, set(taps), {self.first_node} if self.first_node else set())
        self._layer = _TapLayer(self.tap)

    @property
    def graph(self):
        """None when only gradients are measured (no functional graph to run)."""
        return self.tap

    def __call__(self, inputs, training):
        if self.tap is None:
            out = self.model(inputs[0] if len(inputs) == 1 else inputs, training=training)
            return (out if isinstance(out, (list, tuple)) else [out]), []
        outs = self._layer(list(inputs), training=training)
        extras = [self.tap.seen[key] for key in self.taps]
        if self.first_node is not None:
            extras.append(self.tap.seen_inputs[self.first_node])
        return list(outs), extras


def _TapLayer(tap):
    """A weightless Keras layer whose call runs ``tap``: Keras' call context (the training flag
    that layers without a ``training`` argument read) is set as a model call sets it."""
    import keras

    class TapLayer(keras.layers.Layer):
        def __init__(self):
            super().__init__(autocast=False, name="stalldoc_tap")
            self.built = True

        def call(self, inputs, training=None):
            return tap.run(inputs, training)

        def compute_output_spec(self, *args, **kwargs):  # never called symbolically
            raise NotImplementedError

    return TapLayer()


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


