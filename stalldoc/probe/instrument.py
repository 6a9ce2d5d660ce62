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
    return function_name(getattr(layer, "activation", None))


def function_name(fn) -> str | None:
    """An activation function's serialized name ("sigmoid"), None for None."""
    import keras

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
    (``base/block_3_expand_relu``); ``index`` orders every entry (nested ones included).
    A tracked layer of a subclassed model has no node: ``group`` is the subclassed model's
    node, whose call runs it (see ``Capture``)."""

    path: str
    layer: object
    index: int
    node: object = None  # its first call in its own model's graph
    measured: bool = False
    group: object = None  # the node of the subclassed model that calls it
    float_input: bool = False  # a captured layer's first input is one float tensor
    called: bool = True  # False: a subclassed model's tracked layer that its call never runs

    @property
    def key(self) -> int:
        """What the tap files its output under: its node, or (captured layers) the layer."""
        return id(self.node) if self.node is not None else id(self.layer)


def is_subclassed_layer(layer) -> bool:
    """A ``keras.Model`` subclass (no graph of its own): its tracked layers are measured by
    capturing their calls (``Capture``)."""
    import keras
    from keras.src.models.functional import Functional

    return isinstance(layer, keras.Model) and not isinstance(layer, (Functional, keras.Sequential))


def _opens(layer) -> bool:
    """Inside a subclassed model: descend into nested functional models and into custom
    layers that hold layers; built-in Keras layers (LSTM, Bidirectional, ...) are leaves."""
    if graph_of(layer) is not None and layer.layers:
        return True
    return not type(layer).__module__.startswith("keras") and bool(getattr(layer, "_layers", None))


def tracked_leaves(layer, prefix: str, depth: int = 0, seen: set[int] | None = None) -> list[tuple[str, object]]:
    """(path, layer) of every layer a subclassed ``layer`` tracks, custom containers opened."""
    import keras

    seen = set() if seen is None else seen
    subs = layer.layers if graph_of(layer) is not None else (getattr(layer, "_layers", None) or [])
    out = []
    for sub in subs:
        if isinstance(sub, keras.layers.InputLayer) or id(sub) in seen:
            continue
        seen.add(id(sub))
        path = f"{prefix}/{sub.name}"
        if depth < 8 and _opens(sub):
            out.extend(tracked_leaves(sub, path, depth + 1, seen))
        else:
            out.append((path, sub))
    return out


class Capture:
    """Wraps the ``call`` of a subclassed model's tracked layers while it runs (a context
    manager, entered only while the step is traced) and keeps each layer's first call: its
    output, its arguments, in call order. The wrappers are instance attributes, removed on exit."""

    def __init__(self, layers: list):
        self.layers = layers
        self.reset()

    def reset(self) -> None:
        self.order: list[int] = []
        self.outputs: dict[int, object] = {}
        self.calls: dict[int, tuple] = {}

    def __enter__(self):
        for layer in self.layers:
            original = layer.__dict__.get("call")
            bound = layer.call

            def wrapped(*args, _layer=layer, _bound=bound, **kwargs):
                outputs = _bound(*args, **kwargs)
                key = id(_layer)
                if key not in self.outputs:
                    self.order.append(key)
                    self.outputs[key] = outputs
                    self.calls[key] = (args, kwargs)
                return outputs

            object.__setattr__(layer, "_stalldoc_call", original)
            object.__setattr__(layer, "call", wrapped)
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            original = layer.__dict__.pop("_stalldoc_call", None)
            if original is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", original)
        return False


def _single_float(value) -> bool:
    return not isinstance(value, (list, tuple, dict)) and _float_output(value)


def _discover(op, node, leaves: list[tuple[str, object]]) -> Capture:
    """Trace ``op`` (a subclassed model) once on its node's input specs with its tracked layers
    captured: which of them its ``call`` runs, in which order, with what outputs."""
    import tensorflow as tf
    from keras.src.models.functional import operation_fn

    capture = Capture([layer for _, layer in leaves])
    specs = [tf.TensorSpec(t.shape, t.dtype) for t in node.input_tensors]

    def trace(*xs):
        values = {id(t): x for t, x in zip(node.input_tensors, xs)}
        args, kwargs = node.arguments.fill_in(values)
        with capture:
            operation_fn(op, training=True)(*args, **kwargs)
        return tf.constant(0.0)

    tf.function(trace).get_concrete_function(*specs)
    return capture


def flatten(model, prefix: str = "", start: int = 0, top: bool = True,
            notes: list[str] | None = None) -> tuple[list[Entry], int]:
    """Every layer of ``model`` with its path, nested functional/Sequential models replaced by
    their own layers (recursively), a subclassed model by the tracked layers its call runs
    (in call order; the ones it does not run first, unmeasured); InputLayers only at the top,
    where they keep their index. What cannot be measured is said in ``notes``."""
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
            sub, index = flatten(layer, f"{prefix}{layer.name}/", index + 1, top=False, notes=notes)
            entries.extend(sub)
            continue
        if node is not None and is_subclassed_layer(layer):
            sub, index = _subclassed_entries(layer, node, prefix, index, notes)
            if sub:
                entries.extend(sub)
                continue
        entries.append(Entry(path=prefix + layer.name, layer=layer, index=index, node=node))
        index += 1
    return entries, index


def _subclassed_entries(layer, node, prefix: str, index: int, notes: list[str] | None) -> tuple[list[Entry], int]:
    """The entries of a subclassed model's tracked layers; none when its call cannot be traced
    with them captured (it is then measured as one layer)."""
    from stalldoc.errors import one_line

    leaves = tracked_leaves(layer, prefix + layer.name)
    if not leaves:
        return [], index
    try:
        capture = _discover(layer, node, leaves)
    except Exception as exc:  # noqa: BLE001 - its call could not be traced with wrapped layers
        if notes is not None:
            notes.append(f"subclassed model {layer.name!r}: its layers' outputs could not be captured "
                         f"({type(exc).__name__}: {one_line(exc)}); only its own output is measured")
        return [], index
    by_id = {id(sub): path for path, sub in leaves}
    uncalled = [(path, sub) for path, sub in leaves if id(sub) not in capture.outputs]
    called = [(by_id[key], next(s for _, s in leaves if id(s) == key)) for key in capture.order]
    entries, skipped = [], []
    for path, sub in [*uncalled, *called]:
        entry = Entry(path=path, layer=sub, index=index, group=node, called=id(sub) in capture.outputs)
        output = capture.outputs.get(id(sub))
        if not entry.called:
            skipped.append(f"{path} (not called)")
        elif _single_float(output):
            entry.measured = True
            args = capture.calls[id(sub)][0]
            entry.float_input = bool(args) and _single_float(args[0])
        else:
            skipped.append(f"{path} (not one float output)")
        entries.append(entry)
        index += 1
    if notes is not None:
        text = (f"subclassed model {layer.name!r}: outputs measured for {len(leaves) - len(skipped)} of its "
                f"{len(leaves)} tracked layers, as its call() runs them; operations applied in call() outside "
                "layers (e.g. an activation function called directly) are not measured")
        notes.append(text + (f"; not measured: {', '.join(skipped)}" if skipped else ""))
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
    functional/Sequential models instead of calling them, and keeps the outputs (and inputs,
    and call arguments) of the nodes it is asked for; a subclassed model's node runs with its
    tracked layers captured (``groups``): every layer runs once, in one traced step."""

    def __init__(self, model, taps: set[int], inputs_of: set[int], calls_of: set[int] = frozenset(),
                 groups: dict[int, list] | None = None):
        self.model = model
        self.taps = taps
        self.inputs_of = inputs_of
        self.calls_of = calls_of
        self.groups = groups or {}  # id(node) of a subclassed model -> the layers to capture

    def run(self, inputs, training):
        self.seen: dict[int, object] = {}
        self.seen_inputs: dict[int, object] = {}
        self.seen_calls: dict[int, tuple] = {}
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
                key = id(node)
                if inner is not None and op.layers:
                    outputs = self._nested(inner, op, args, kwargs, training)
                elif key in self.groups:
                    capture = Capture(self.groups[key])
                    with capture:
                        outputs = operation_fn(op, training=training)(*args, **kwargs)
                    self._keep_captured(capture)
                else:
                    outputs = operation_fn(op, training=training)(*args, **kwargs)
                self._keep(key, outputs, args, kwargs)
                for x, y in zip(node.outputs, tree.flatten(outputs)):
                    values[id(x)] = y
        return [values[id(x)] for x in graph.outputs]

    def _keep(self, key, outputs, args, kwargs) -> None:
        if key in self.taps and key not in self.seen:
            self.seen[key] = outputs
        if key in self.inputs_of and key not in self.seen_inputs:
            self.seen_inputs[key] = args[0] if args else None
        if key in self.calls_of and key not in self.seen_calls:
            self.seen_calls[key] = (args, kwargs)

    def _keep_captured(self, capture: Capture) -> None:
        for key in capture.order:
            args, kwargs = capture.calls[key]
            self._keep(key, capture.outputs[key], args, kwargs)

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
    sub-models' layers included (``entries``), and the recurrent layers' gate statistics
    (``recurrent_stats``). ``notes`` says what could not be measured."""

    def __init__(self, model):
        self.model = model
        self.layers = []  # (entry index, layer) whose outputs are collected, in extras' order
        self.first_weighted_input = None
        self.entries: list[Entry] = []
        self.recurrent: list[tuple[Entry, list]] = []  # (entry, its recurrent.Direction list)
        self.notes: list[str] = []
        self.tap = None
        outputs = getattr(model, "outputs", None)
        if graph_of(model) is None or not outputs:  # a model without a graph: measure gradients only
            self.n_outputs = 1
            return
        self.n_outputs = len(outputs)
        self.entries, _ = flatten(model, notes=self.notes)
        taps: list[int] = []
        groups: dict[int, list] = {}
        for k, entry in enumerate(self.entries):
            if entry.group is not None:
                groups.setdefault(id(entry.group), []).append(entry.layer)
                if not entry.measured:
                    continue
            else:
                node = entry.node
                if node is None or len(node.outputs) != 1 or not _float_output(node.outputs[0]):
                    continue
                entry.measured = True
            self.layers.append((k, entry.layer))
            taps.append(entry.key)
        self.taps = taps
        first = next((e for e in self.entries if e.measured and e.layer.trainable_weights), None)
        self.first_node = None
        if first is not None:
            if first.group is not None:
                usable = first.float_input
            else:
                tensor = _single(first.node.input_tensors)
                usable = not isinstance(tensor, (list, tuple)) and _float_output(tensor)
            if usable:
                self.first_node = first.key
                self.first_weighted_input = len(taps)
        self.recurrent = self._recurrent_entries()
        self.tap = _Tap(model, set(taps), {self.first_node} if self.first_node else set(),
                        {entry.key for entry, _ in self.recurrent}, groups)
        self._layer = _TapLayer(self.tap)

    def _recurrent_entries(self) -> list[tuple[Entry, list]]:
        from stalldoc.probe.recurrent import directions

        out = []
        for entry in self.entries:
            if not entry.called or (entry.group is None and entry.node is None):
                continue  # never called: nothing to unroll
            found, reason = directions(entry.layer, entry.path)
            if found:
                out.append((entry, found))
            elif reason:
                self.notes.append(f"recurrent layer {reason}: its gates are not measured")
        return out

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

    def recurrent_stats(self) -> list:
        """Per recurrent direction, its gate statistics (``recurrent.unroll_stats``), from the
        sequences the last call (in the same trace) fed the layers; call it outside the
        gradient tape and before the update."""
        from stalldoc.probe.recurrent import call_inputs, unroll_stats

        if self.tap is None:
            return []
        out = []
        for entry, found in self.recurrent:
            args, kwargs = self.tap.seen_calls[entry.key]
            sequence, mask, initial = call_inputs(args, kwargs)
            out.extend(unroll_stats(d, sequence, mask, initial) for d in found)
        return out


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
        inner = getattr(optimizer, "inner_optimizer", None)  # mixed_float16's loss scaling around it
        if inner is not None:
            return fresh, f"{inner.__class__.__name__} (in a {optimizer.__class__.__name__})"
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


