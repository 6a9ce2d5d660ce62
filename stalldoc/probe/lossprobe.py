"""Probing the loss function itself: how it behaves, measured, never inferred from its name.

The loss is evaluated on one batch of the user's real targets ``y`` against predictions
built from them: pointing at them (cos = 1), away from them (cos = -1) and in between, at
fixed norm; scaled by 1e-3..1e3; with the targets scaled; with one vector set to zero; with
half the batch changed. From those values come the facts the objective detectors read:
does the loss fall as predictions align or as they anti-align, is it scale invariant like
a cosine, does it reward the prediction's norm, does it see the predictions at all, does it
couple samples across the batch axis. Imports TensorFlow; used only by the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stalldoc.facts import LossProbeFacts

COSINES = np.array([1.0, 0.5, 0.0, -0.5, -1.0])
SCALES = np.array([1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3])
PROBE_SAMPLES = 64  # target vectors evaluated (an even number: the batch is split in halves)
# Per-sample losses reproduce to float32 rounding (measured 1.4e-8 of the range); a
# coupling above this share of the loss's range is not rounding. A cosine over the batch
# axis of 64 samples measures 5e-4..8.5e-3.
COUPLING_TOLERANCE = 1e-5
# "Scale invariant": the loss moves by less than this share of its range over a 1e6 span of scales.
INVARIANCE_TOLERANCE = 1e-3


def unit_rows(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-30)


def at_cosine(y: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """Vectors with cos(y_i, p_i) = c and |p_i| = |y_i|, over the last axis of (n, d) rows."""
    d = y.shape[-1]
    u = unit_rows(y)
    if d < 2:
        return y * np.sign(c) if c != 0 else np.zeros_like(y)
    r = rng.normal(size=y.shape)
    r = r - np.sum(r * u, axis=-1, keepdims=True) * u
    r = unit_rows(r)
    norm = np.linalg.norm(y, axis=-1, keepdims=True)
    return (c * u + np.sqrt(max(0.0, 1.0 - c * c)) * r) * norm


def probe_loss(fn: Callable[[Any, Any], Any], targets: np.ndarray, *, output_shape: Sequence[int] | None = None,
               output_min: float | None = None, output_max: float | None = None,
               seed: int = 0) -> LossProbeFacts:
    """Measure ``fn`` on a batch of real targets (samples first). Raises if the loss cannot be
    evaluated on predictions shaped like the targets."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    y, rows, real, notes = _probe_targets(targets, rng)
    shape, n = y.shape, y.shape[0]
    d = shape[-1] if y.ndim > 1 else 1

    def shaped(v: np.ndarray) -> np.ndarray:
        return v.reshape(shape)

    def value(yt: np.ndarray, yp: np.ndarray) -> float:
        out = fn(tf.constant(yt, tf.float32), tf.constant(yp, tf.float32))
        return float(tf.reduce_mean(tf.cast(out, tf.float32)))

    def gradient(yt: np.ndarray, yp: np.ndarray) -> np.ndarray:
        p = tf.Variable(yp, dtype=tf.float32)
        with tf.GradientTape() as tape:
            out = tf.reduce_mean(tf.cast(fn(tf.constant(yt, tf.float32), p), tf.float32))
        g = tape.gradient(out, p)
        return np.zeros(yp.shape) if g is None else np.asarray(g, dtype=np.float64)

    curve = np.array([value(y, shaped(at_cosine(rows, c, rng))) for c in COSINES])
    aligned, anti = float(curve[0]), float(curve[-1])
    spread = float(np.nanmax(curve) - np.nanmin(curve)) if np.isfinite(curve).any() else 0.0
    scale = spread if spread > 1e-12 else max(abs(aligned), 1e-12)
    orthogonal = float(curve[2]) if d >= 2 else None
    # Distance from a line in cos: a cosine distance (normalized or not) is affine in cos at fixed norm.
    line = np.polyval(np.polyfit(COSINES, curve, 1), COSINES) if np.all(np.isfinite(curve)) else curve * np.nan
    affine = float(np.max(np.abs(curve - line)) / scale) if np.all(np.isfinite(line)) else float("nan")

    half = shaped(at_cosine(rows, 0.5, rng))
    pred_scale = np.array([value(y, a * half) for a in SCALES])
    aligned_scale = np.array([value(y, a * y) for a in SCALES])
    target_scale = np.array([value(a * y, half) for a in SCALES])

    def rel_spread(values: np.ndarray) -> float:
        if not np.all(np.isfinite(values)):
            return float("inf")
        return float((values.max() - values.min()) / scale)

    norm_reward = float((aligned - np.nanmin(aligned_scale)) / scale) if np.isfinite(aligned_scale).any() else 0.0

    # A generic prediction, independent of y (at cos 0.5 a length-1 axis would be exactly aligned).
    generic = rng.normal(size=shape) * float(np.sqrt(np.mean(rows**2)))
    g = gradient(y, generic)
    sensitivity = float(np.linalg.norm(g) * np.linalg.norm(generic) / scale)

    shuffled = value(y, y[rng.permutation(n)])
    coupling = _batch_coupling(value, y, half, rng.normal(size=shape) * float(np.sqrt(np.mean(rows**2)))) / scale
    zero_target_ok = _finite_with_zero(value, gradient, y, half, target_zero=True)
    zero_pred_ok = _finite_with_zero(value, gradient, y, half, target_zero=False)

    probe_values = np.concatenate([curve, pred_scale, aligned_scale, target_scale, [shuffled]])
    finite = bool(np.all(np.isfinite(probe_values)))
    pred_spread = rel_spread(pred_scale)
    is_cosine_like = bool(pred_spread < INVARIANCE_TOLERANCE and anti - aligned > INVARIANCE_TOLERANCE * scale)
    pos_cos, negative_fraction, concentration = _target_directions(real)
    reachable, out_range = _reachable(value, y, rows, output_min, output_max)
    broadcast = _broadcast_shape(fn, value, y, tuple(output_shape) if output_shape is not None else None, rng)

    return LossProbeFacts(
        aligned=aligned, anti_aligned=anti, orthogonal=orthogonal, alignment_cosines=COSINES.copy(),
        alignment_curve=curve, scale_factors=SCALES.copy(), prediction_scale_curve=pred_scale,
        aligned_scale_curve=aligned_scale, target_scale_curve=target_scale, scale_spread=pred_spread,
        target_scale_spread=rel_spread(target_scale), norm_reward=norm_reward, affine_residual=affine,
        reduced_axis_length=int(d), sensitivity=sensitivity, shuffled=shuffled,
        batch_axis_coupling=float(coupling), batch_axis_coupled=bool(coupling > COUPLING_TOLERANCE),
        zero_target_finite=zero_target_ok, zero_prediction_finite=zero_pred_ok, finite=finite,
        is_cosine_like=is_cosine_like, samples=n, negative_target_fraction=negative_fraction,
        positive_part_cosine=pos_cos, reachable_loss=reachable, output_range=out_range,
        direction_concentration=concentration, broadcast_shape=broadcast, notes=notes,
    )


def _probe_targets(targets: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(y, its rows over the last axis, the real rows, notes): an even number of target rows,
    zero or non-finite vectors replaced by random ones so that "aligned" means something for
    every row (directions and signs are measured on the real ones)."""
    notes: list[str] = []
    y_all = np.asarray(targets, dtype=np.float64)
    n = min(PROBE_SAMPLES, y_all.shape[0])
    n -= n % 2
    if n < 2:
        raise ValueError("the loss probe needs at least 2 target samples")
    y = y_all[rng.choice(y_all.shape[0], n, replace=False)] if y_all.shape[0] > n else y_all[:n].copy()
    shape = y.shape
    d = shape[-1] if y.ndim > 1 else 1
    rows = y.reshape(-1, d)
    bad = ~np.all(np.isfinite(rows), axis=-1) | (np.linalg.norm(np.nan_to_num(rows), axis=-1) < 1e-12)
    real = rows[~bad]
    if bad.any():
        notes.append(f"{int(bad.sum())} of {rows.shape[0]} probe target vectors were zero or non-finite "
                     "and were replaced by random vectors")
        rows = rows.copy()
        rows[bad] = rng.normal(size=(int(bad.sum()), d))
    return rows.reshape(shape), rows, real, notes


def _batch_coupling(value, y: np.ndarray, half: np.ndarray, other: np.ndarray) -> float:
    """The mixed second difference of the loss over the two halves of the batch: exactly zero
    for a loss that is a sum or mean of per-sample terms."""
    h = y.shape[0] // 2

    def mixed(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return np.concatenate([first[:h], second[h:]])

    return abs((value(y, mixed(half, half)) - value(y, mixed(half, other)))
               - (value(y, mixed(other, half)) - value(y, mixed(other, other))))


def _finite_with_zero(value, gradient, y: np.ndarray, half: np.ndarray, *, target_zero: bool) -> bool:
    """Whether the loss and its gradient stay finite when one target (or prediction) vector is zero."""
    d = y.shape[-1] if y.ndim > 1 else 1
    yt, yp = y.copy(), half.copy()
    (yt if target_zero else yp).reshape(-1, d)[0] = 0.0
    try:
        return bool(np.isfinite(value(yt, yp)) and np.all(np.isfinite(gradient(yt, yp))))
    except Exception:  # noqa: BLE001 - a loss that raises on a zero vector is not finite there
        return False


def _target_directions(real: np.ndarray) -> tuple[float | None, float, float]:
    """What the real targets allow: the best cosine an output that cannot go negative reaches
    (the direction of y's positive part, |y+| / |y|), the share of negative components, and
    how concentrated their directions are (|mean of unit vectors|)."""
    real_norm = np.linalg.norm(real, axis=-1)
    positive = np.clip(real, 0.0, None)
    pos_cos = float(np.mean(np.linalg.norm(positive, axis=-1) / np.maximum(real_norm, 1e-30))) if real.size else None
    negative_fraction = float(np.mean(real < 0)) if real.size else 0.0
    concentration = float(np.linalg.norm(np.mean(unit_rows(real), axis=0))) if real.shape[0] >= 2 else 0.0
    return pos_cos, negative_fraction, concentration


def _reachable(value, y: np.ndarray, rows: np.ndarray, output_min: float | None,
               output_max: float | None) -> tuple[float | None, tuple[float, float] | None]:
    """The loss at the best prediction a non-negative output's measured range allows, and that range."""
    if output_min is None or not np.isfinite(output_min) or output_min < 0.0:
        return None, None
    hi = 1.0 if output_max is not None and output_max <= 1.0 else np.inf
    clipped = np.clip(rows, 0.0, hi)
    # Same direction as y+, scaled into [0, hi]: what a scale-invariant loss needs.
    top = np.max(np.clip(rows, 0.0, None), axis=-1, keepdims=True)
    direction = np.clip(rows, 0.0, None) / np.maximum(top / min(hi, 1.0), 1.0) if np.isfinite(hi) else clipped
    candidates = [value(y, clipped.reshape(y.shape)), value(y, direction.reshape(y.shape))]
    finite_candidates = [c for c in candidates if np.isfinite(c)]
    return (min(finite_candidates) if finite_candidates else float("nan")), (0.0, float(hi))


def _broadcast_shape(fn, value, y: np.ndarray, output_shape: tuple[int, ...] | None,
                     rng: np.random.Generator) -> tuple[int, ...] | None:
    """The per-sample shape targets and predictions are stretched to, when they differ and the
    loss really treats them elementwise (its value equals the value on explicitly broadcast
    copies). None when the shapes agree or the loss pairs them some other way (sparse labels)."""
    target_shape = tuple(y.shape[1:])
    if output_shape is None or output_shape == target_shape:
        return None
    # Keras' compile squeezes a trailing length-1 axis when ranks differ by one.
    if len(output_shape) == len(target_shape) + 1 and output_shape[-1:] == (1,) \
            and output_shape[:-1] == target_shape:
        return None
    if len(target_shape) == len(output_shape) + 1 and target_shape[-1:] == (1,) \
            and target_shape[:-1] == output_shape:
        return None
    n = y.shape[0]
    try:
        full = np.broadcast_shapes((n, *target_shape), (n, *output_shape))
    except ValueError:
        return None
    p = rng.normal(size=(n, *output_shape))
    try:
        direct = value(y, p)
    except Exception:  # noqa: BLE001 - the loss refuses the pairing: the probe step reports it
        return None
    if not np.isfinite(direct):
        return None
    stretched = tuple(int(s) for s in full[1:])
    if int(np.prod(target_shape)) > int(np.prod(output_shape)):
        return stretched  # fewer predicted values than target components: some are repeated
    if not np.allclose(y, np.round(y)):
        return stretched  # real-valued targets are not class indices: they are compared elementwise
    try:
        expanded = value(np.broadcast_to(y, full).copy(), np.broadcast_to(p, full).copy())
    except Exception:  # noqa: BLE001 - integer labels the loss reads as indices (sparse labels)
        return None
    return stretched if np.isclose(direct, expanded, rtol=1e-4, atol=1e-6) else None
