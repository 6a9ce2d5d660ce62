"""The constant-predictor baseline, the task, and accuracy: what the loss is judged against.

The baseline is the loss of the best prediction that ignores x, found by measurement for any
loss: one free vector z of the output's shape, passed through the model's output activation
and broadcast over the batch, is fitted to the probe's training targets by gradient descent,
then scored on the evaluation batch. For cross-entropies that lands on the class frequencies
(ln K for balanced classes), for MSE on the mean target, for MAE on the median, for a
cosine on the mean direction — without naming any of them.
"""

from __future__ import annotations

import math

import numpy as np

from stalldoc.facts import ArrayFacts, TaskFacts

BASELINE_FIT_STEPS = 300
BASELINE_FIT_ROWS = 1024
# Losses that are never negative with a floor of 0 at a perfect prediction: their floor is
# known even when loss(y, y) cannot be evaluated (class ids against class scores).
ZERO_FLOOR_LOSSES = {
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
    "mean_squared_error", "mean_absolute_error", "huber", "log_cosh", "categorical_focal_crossentropy",
    "binary_focal_crossentropy", "mean_squared_logarithmic_error",
}
CROSS_ENTROPIES = {"categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
                   "categorical_focal_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge",
                   "categorical_hinge"}


def loss_identity(fn) -> tuple[str | None, bool | None]:
    """(canonical Keras name, from_logits) of a built-in loss; (None, None) for a custom one."""
    import keras

    inner = getattr(fn, "__wrapped__", fn)
    if isinstance(inner, keras.losses.Loss):
        config = inner.get_config() if hasattr(inner, "get_config") else {}
        target = getattr(inner, "fn", None)
        name = getattr(target, "__name__", None) or _snake(type(inner).__name__)
        return _canonical(name), config.get("from_logits")
    name = getattr(inner, "__name__", None)
    module = getattr(inner, "__module__", "") or ""
    if name and module.startswith("keras"):
        return _canonical(name), False if "crossentropy" in name else None
    return None, None


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out


def _canonical(name: str) -> str:
    aliases = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber_loss": "huber",
               "logcosh": "log_cosh", "msle": "mean_squared_logarithmic_error",
               "mean_squared_logarithmic_error": "mean_squared_logarithmic_error"}
    return aliases.get(name, name)


def constant_baseline(loss_fn, y_fit: np.ndarray, y_eval: np.ndarray, output_shape: tuple[int, ...],
                      output_activation: str | None, seed: int) -> float | None:
    """The loss on ``y_eval`` of the best constant output fitted on ``y_fit`` (None if unmeasurable)."""
    import keras
    import tensorflow as tf

    act = _activation(output_activation)
    if act is None:
        return None
    shape = tuple(int(s) for s in output_shape)
    init = np.zeros(shape, np.float32)
    scale = 1.0
    if output_activation in (None, "linear") and y_fit.shape[1:] == shape:
        init = np.mean(y_fit, axis=0).astype(np.float32)
        scale = max(1.0, float(np.std(y_fit)))
    elif output_activation == "relu" and y_fit.shape[1:] == shape:
        init = np.maximum(np.mean(y_fit, axis=0), 0.0).astype(np.float32) + 0.01
    z = tf.Variable(init)
    optimizer = keras.optimizers.Adam(learning_rate=0.05 * scale)
    y_fit_t = tf.constant(y_fit, tf.float32)

    def loss_at(y, variable):
        # The activation last, as in the model: Keras' cross-entropies then read the logits
        # behind a sigmoid/softmax output, as they do in training.
        pred = act(tf.broadcast_to(variable[None], (tf.shape(y)[0],) + shape))
        return tf.reduce_mean(tf.cast(loss_fn(y, pred), tf.float32))

    @tf.function(autograph=False)
    def fit_step():
        with tf.GradientTape() as tape:
            value = loss_at(y_fit_t, z)
        grad = tape.gradient(value, z)
        if grad is not None:
            optimizer.apply_gradients([(grad, z)])
        return value

    try:
        start = float(loss_at(y_fit_t, z))
        best, best_z = start, init
        for i in range(BASELINE_FIT_STEPS):
            value = float(fit_step())
            if not math.isfinite(value):
                break
            if value < best and i % 10 == 9:
                best, best_z = value, z.numpy().copy()
        final = float(loss_at(y_fit_t, z))
        if math.isfinite(final) and final < best:
            best_z = z.numpy()
        z.assign(best_z)
        result = float(loss_at(tf.constant(y_eval, tf.float32), z))
    except Exception:  # noqa: BLE001 - a loss that cannot take a broadcast constant
        return None
    return result if math.isfinite(result) else None


def _activation(name: str | None):
    import keras

    if name in (None, "linear"):
        return lambda t: t
    try:
        return keras.activations.get(name)
    except Exception:  # noqa: BLE001 - a custom activation: no baseline through it
        return None


def infer_task(loss_kind: str | None, cosine_like: bool, targets: ArrayFacts, output_units: int | None,
               output_activation: str | None) -> TaskFacts:
    """Classification, regression or a cosine objective, from what was measured."""
    per_sample = int(np.prod(targets.shape[1:])) if len(targets.shape) > 1 else 1
    units = output_units or 1
    lo = float(np.nanmin(targets.feature_min)) if targets.features else float("nan")
    hi = float(np.nanmax(targets.feature_max)) if targets.features else float("nan")
    zero_one = targets.integer_valued and lo >= 0 and hi <= 1
    classify = loss_kind in CROSS_ENTROPIES or (
        loss_kind is None and not cosine_like and output_activation in ("softmax", "sigmoid")
        and targets.integer_valued)
    if loss_kind is None and cosine_like:
        return TaskFacts(kind="cosine")
    if loss_kind == "cosine_similarity":
        return TaskFacts(kind="cosine")
    if not classify:
        # Class ids against a wider output with no cross-entropy are still a classification task.
        if per_sample == 1 and units > 1 and targets.integer_valued and lo >= 0 and hi < units:
            return TaskFacts(kind="classification", label_format="sparse", classes=units)
        return TaskFacts(kind="regression")
    if per_sample == 1 and units > 1:
        return TaskFacts(kind="classification", label_format="sparse", classes=units)
    if per_sample == 1:
        return TaskFacts(kind="classification", label_format="binary", classes=2)
    if zero_one:
        row_sums_one = abs(float(np.sum(targets.feature_mean)) - 1.0) < 1e-3
        if row_sums_one:
            return TaskFacts(kind="classification", label_format="one-hot", classes=per_sample)
        return TaskFacts(kind="classification", label_format="multi-label", classes=per_sample)
    if lo >= 0 and hi <= 1:
        return TaskFacts(kind="classification", label_format="soft", classes=per_sample)
    return TaskFacts(kind="classification", label_format=None, classes=per_sample)


def accuracy(task: TaskFacts, y: np.ndarray, pred: np.ndarray) -> float | None:
    """Share of ``y`` predicted right (argmax for one output per class, 0.5 for sigmoid units)."""
    if task.kind != "classification" or pred.size == 0 or not np.all(np.isfinite(pred)):
        return None
    fmt = task.label_format
    try:
        if fmt == "sparse":
            return float(np.mean(np.argmax(pred.reshape(len(y), -1), axis=-1) == y.reshape(-1).astype(int)))
        if fmt in ("one-hot", "soft"):
            return float(np.mean(np.argmax(pred, axis=-1) == np.argmax(y, axis=-1)))
        if fmt in ("binary", "multi-label"):
            cut = 0.5 if np.min(pred) >= 0 and np.max(pred) <= 1 else 0.0  # probabilities or logits
            return float(np.mean((pred.reshape(y.shape) > cut) == (y > 0.5)))
    except (ValueError, IndexError):
        return None
    return None


def chance_accuracy(task: TaskFacts, y: np.ndarray) -> float | None:
    """Accuracy of always predicting the most frequent class (per unit for multi-label)."""
    if task.kind != "classification" or y.size == 0:
        return None
    if task.label_format == "sparse":
        _, counts = np.unique(y.reshape(-1).astype(int), return_counts=True)
        return float(counts.max() / counts.sum())
    if task.label_format in ("one-hot", "soft"):
        counts = np.bincount(np.argmax(y, axis=-1), minlength=y.shape[-1])
        return float(counts.max() / counts.sum())
    if task.label_format in ("binary", "multi-label"):
        on = np.mean(y > 0.5, axis=0)
        return float(np.mean(np.maximum(on, 1 - on)))
    return None
