"""Resolving ``--loss SPEC`` to a callable. Imports TensorFlow; used only by the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stalldoc.errors import InputError
from stalldoc.inputs.user_code import import_user_code

LOSS_HELP = ("auto, compiled, cosine, keras-cosine, a Keras loss name, "
             "or a function path/to/file.py:function or package.module:function")


@dataclass
class ResolvedLoss:
    fn: Callable[[Any, Any], Any]  # (y_true, y_pred) -> scalar or per-sample tensor
    name: str
    source: str  # "compiled", "default", "user", "flag"
    reason: str  # one line: why this loss was chosen
    # The loss the model file declares but that could not be rebuilt, when another was used.
    substitute_for: str | None = None


def cosine_distance(y_true, y_pred):
    """1 - cos(y_true, y_pred) over the last axis (0 when aligned, 2 when opposite)."""
    import tensorflow as tf

    y_true = tf.math.l2_normalize(tf.cast(y_true, y_pred.dtype), axis=-1)
    y_pred = tf.math.l2_normalize(y_pred, axis=-1)
    return 1.0 - tf.reduce_sum(y_true * y_pred, axis=-1)


def align_ranks(y_true, y_pred):
    """What Keras' compile does before calling a loss function (LossFunctionWrapper, its
    ``squeeze_or_expand_to_same_rank``).

    When the ranks differ by one and the larger tensor's last axis has length 1: a rank-1
    smaller tensor gets that axis ((N,) targets against (N, 1) predictions become (N, 1) and
    (N, 1)), else the larger one loses it. The predictions are left untouched where Keras
    leaves them, so a sigmoid/softmax output keeps the logits Keras' cross-entropies read
    from it. Anything else is passed on unchanged.
    """
    import tensorflow as tf

    def align(x1, x2):
        r1, r2 = len(x1.shape), len(x2.shape)
        if r1 == r2 + 1 and x1.shape[-1] == 1:
            if r2 == 1:
                x2 = tf.expand_dims(x2, axis=-1)
            else:
                x1 = tf.squeeze(x1, axis=-1)
        return x1, x2

    rt, rp = len(y_true.shape), len(y_pred.shape)
    if rt == rp + 1:
        y_true, y_pred = align(y_true, y_pred)
    elif rp == rt + 1:
        y_pred, y_true = align(y_pred, y_true)
    return y_true, y_pred


def as_compiled(fn: Callable) -> Callable:
    """Call a plain loss function as ``model.compile(loss=fn)`` would: ranks aligned first.

    keras.losses.Loss objects align ranks themselves and are returned unchanged.
    """
    import keras

    if isinstance(fn, keras.losses.Loss):
        return fn

    def call(y_true, y_pred):
        import tensorflow as tf

        y_true = tf.cast(y_true, y_pred.dtype)
        return fn(*align_ranks(y_true, y_pred))

    call.__name__ = getattr(fn, "__name__", "loss")
    call.__wrapped__ = fn
    return call


def load_user_function(spec: str) -> tuple[Callable, str]:
    """``path/to/file.py:function`` or ``package.module:function``."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise InputError(f"--loss {spec}: expected FILE.py:FUNCTION or MODULE:FUNCTION")
    module = import_user_code(target, label=f"--loss {spec}", prefix="stalldoc_user_loss_")
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InputError(f"--loss {spec}: {target} has no function {attr!r}")
    return fn, attr


def user_custom_objects(spec: str | None) -> dict[str, Any]:
    """A user loss is registered under its name so a model compiled with it deserializes."""
    if spec and ":" in spec:
        fn, name = load_user_function(spec)
        return {name: fn}
    return {}


def describe_compiled(model) -> str | None:
    loss = getattr(model, "loss", None)
    if loss is None:
        return None
    if isinstance(loss, str):
        return loss
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__


def default_for_targets(model, targets) -> ResolvedLoss:
    """The loss a model saved without one most likely trains with, from its targets and output:
    class ids -> sparse categorical cross-entropy, one-hot rows -> categorical, 0/1 for one
    output unit -> binary (each from logits unless the output has the matching activation);
    one real value per sample -> mean squared error; real vectors -> cosine distance."""
    import keras
    import numpy as np

    from stalldoc.probe.instrument import activation_name

    y = np.asarray(targets, dtype=np.float64)
    shape = tuple(model.outputs[0].shape[1:]) if getattr(model, "outputs", None) else ()
    units = int(shape[-1]) if shape and shape[-1] is not None else 1
    act = activation_name(model.layers[-1]) if getattr(model, "layers", None) else None
    finite = y[np.isfinite(y)]
    integer = finite.size > 0 and bool(np.all(finite == np.round(finite)))
    per_sample = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    zero_one = integer and finite.min() >= 0 and finite.max() <= 1
    said = "--loss auto: the model was saved without a loss; "
    if per_sample == 1 and units > 1 and integer and finite.min() >= 0 and finite.max() < units:
        logits = act != "softmax"
        fn = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
        return ResolvedLoss(fn, "sparse_categorical_crossentropy", "default",
                            f"{said}the targets are class ids for {units} outputs, so sparse categorical "
                            f"cross-entropy (from_logits={logits}); pass --loss to choose another")
    if per_sample == units > 1 and zero_one and np.allclose(y.reshape(len(y), -1).sum(axis=1), 1.0):
        logits = act != "softmax"
        fn = keras.losses.CategoricalCrossentropy(from_logits=logits)
        return ResolvedLoss(fn, "categorical_crossentropy", "default",
                            f"{said}the targets are one-hot rows, so categorical cross-entropy "
                            f"(from_logits={logits}); pass --loss to choose another")
    if per_sample == units == 1 and zero_one:
        logits = act != "sigmoid"
        fn = keras.losses.BinaryCrossentropy(from_logits=logits)
        return ResolvedLoss(fn, "binary_crossentropy", "default",
                            f"{said}the targets are 0/1 for one output, so binary cross-entropy "
                            f"(from_logits={logits}); pass --loss to choose another")
    if per_sample == 1:
        return ResolvedLoss(as_compiled(keras.losses.mean_squared_error), "mean_squared_error", "default",
                            f"{said}one real target per sample, so mean squared error (a cosine over one "
                            "value is degenerate); pass --loss to choose another")
    return ResolvedLoss(as_compiled(cosine_distance), "cosine", "default",
                        f"{said}real-valued target vectors, so cosine distance 1 - cos over the last axis; "
                        "pass --loss to choose another")


def given_loss(loss) -> ResolvedLoss:
    """A loss given as an object (``stalldoc.diagnose(loss=...)``): a ``keras.losses.Loss``, or a
    function ``(y_true, y_pred)`` called as ``compile`` would call it."""
    import keras

    if isinstance(loss, keras.losses.Loss):
        name = getattr(loss, "name", None) or type(loss).__name__
        return ResolvedLoss(loss, name, "user", f"loss: the given Keras loss {name!r}")
    if callable(loss):
        name = getattr(loss, "__name__", None) or type(loss).__name__
        return ResolvedLoss(as_compiled(loss), name, "user", f"loss: the given function {name!r}")
    raise InputError(f"loss: expected a keras.losses.Loss, a function (y_true, y_pred) or a loss name, "
                     f"got {type(loss).__name__}")


def resolve_loss(spec: str, model, notes: list[str] | None = None,
                 declared: str | None = None, targets=None) -> ResolvedLoss:
    """The loss the probe trains with, and one line saying why it was chosen.

    Every function is called as Keras' compile would call it (see ``as_compiled``).
    ``targets`` (a callable returning a sample of the target rows, read only when needed)
    lets ``auto`` choose a loss that fits them when the model was saved without one.
    """
    import keras

    if not isinstance(spec, str):
        return given_loss(spec)
    compiled = getattr(model, "loss", None)
    if spec == "auto":
        if compiled is not None:
            try:
                fn = keras.losses.get(compiled) if isinstance(compiled, str) else compiled
                if fn is not None:
                    return ResolvedLoss(as_compiled(fn), describe_compiled(model), "compiled",
                                        f"--loss auto: the model's compiled loss {describe_compiled(model)!r}")
            except Exception:  # noqa: BLE001 - fall through to the default below
                pass
        if declared:
            try:
                fn = keras.losses.get(declared)
            except Exception:  # noqa: BLE001 - a custom function Keras does not know
                fn = None
            if fn is not None:
                return ResolvedLoss(as_compiled(fn), declared, "compiled",
                                    f"--loss auto: the model's compiled loss {declared!r} "
                                    "(read from the file's compile configuration)")
            return ResolvedLoss(
                as_compiled(cosine_distance), "cosine", "default",
                f"--loss auto: the model's compiled loss {declared!r} could not be rebuilt; using cosine "
                f"distance 1 - cos instead (pass the function with --loss FILE.py:{declared})",
                substitute_for=declared)
        unbuilt = any("could not be rebuilt" in n for n in notes or [])
        if not unbuilt and targets is not None:
            return default_for_targets(model, targets())
        why = ("the model's compiled loss could not be rebuilt (a custom function? pass it with "
               "--loss FILE.py:FUNCTION)" if unbuilt else "the model is not compiled with a loss")
        return ResolvedLoss(as_compiled(cosine_distance), "cosine", "default",
                            f"--loss auto: {why}; using cosine distance 1 - cos over the last axis",
                            substitute_for="?" if unbuilt else None)
    if spec == "compiled":
        if compiled is None:
            raise InputError("--loss compiled: the model file holds no compiled loss that could be rebuilt")
        fn = keras.losses.get(compiled) if isinstance(compiled, str) else compiled
        return ResolvedLoss(as_compiled(fn), describe_compiled(model), "compiled",
                            f"--loss compiled: the model's compiled loss {describe_compiled(model)!r}")
    if spec == "cosine":
        return ResolvedLoss(as_compiled(cosine_distance), "cosine", "flag",
                            "--loss cosine: 1 - cos over the last axis")
    if spec == "keras-cosine":
        return ResolvedLoss(as_compiled(keras.losses.cosine_similarity), "keras-cosine", "flag",
                            "--loss keras-cosine: Keras' cosine_similarity, the negative cosine -cos")
    if ":" in spec:
        fn, name = load_user_function(spec)
        return ResolvedLoss(as_compiled(fn), name, "user", f"--loss {spec}: the user's function {name!r}")
    try:
        fn = keras.losses.get(spec)
    except Exception:  # noqa: BLE001
        fn = None
    if fn is None:
        raise InputError(f"--loss {spec}: not a known loss (use {LOSS_HELP})")
    return ResolvedLoss(as_compiled(fn), spec, "flag", f"--loss {spec}: the Keras loss {spec!r}")
