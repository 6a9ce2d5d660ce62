"""Detectors on the objective: faults of the loss function and of what it compares.

Most read ``facts.loss_probe`` (the loss measured on real targets and constructed
predictions, see ``stalldoc.probe.lossprobe``) and ``facts.predictions`` (the model's outputs
against the targets during the probe), and never look at a loss's name. Two read what the
loss and the output are: loss-output-mismatch pairs a Keras built-in loss (``LossFacts.kind``,
its function's canonical name) with the output activation and the targets, and
single-unit-softmax reads the output activation and width. Output activations are identified
by their function (ReLU, softmax, sigmoid) as the model's config serializes it, and their
range is confirmed on the measured outputs where it matters.
"""

from __future__ import annotations

import math

import numpy as np

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt, need_probe, ramp
from stalldoc.facts import (
    ACTIVATION_RANGES,
    FLAT_PROGRESS,
    NON_NEGATIVE_ACTIVATIONS,
    PROBABILITY_ACTIVATIONS,
    Facts,
    LossProbeFacts,
)
from stalldoc.findings import Finding, Severity

# A loss whose value at fixed norm is within this share of its range from a line in cos is
# "cosine-shaped" (1 - cos, -cos and 1 - y.p are exactly affine: measured residual 0;
# mean absolute error 0.14).
AFFINE_TOLERANCE = 0.05

# Keras' built-in losses by what they expect (LossFacts.kind, the canonical function name).
CATEGORICAL_LOSSES = frozenset({"categorical_crossentropy", "categorical_focal_crossentropy"})
SPARSE_LOSSES = frozenset({"sparse_categorical_crossentropy"})
BINARY_LOSSES = frozenset({"binary_crossentropy", "binary_focal_crossentropy"})
FROM_LOGITS_LOSSES = CATEGORICAL_LOSSES | SPARSE_LOSSES | BINARY_LOSSES  # cross-entropies with from_logits
CLASSIFICATION_LOSSES = FROM_LOGITS_LOSSES | {"hinge", "squared_hinge", "categorical_hinge"}
VALUE_LOSSES = frozenset({"mean_squared_error", "mean_absolute_error", "huber", "log_cosh"})


def curve_text(lp: LossProbeFacts) -> str:
    return ", ".join(f"cos {c:+g}: {fmt(v)}" for c, v in zip(lp.alignment_cosines, lp.alignment_curve))


class InvertedLoss(Detector):
    """
    What it detects:
        A loss that is lower when the predictions point away from the targets than when
        they point at them. Measured on a batch of real targets y: the loss at predictions
        with cos(y, p) = 1, 0.5, 0, -0.5, -1 and |p| = |y|. Typical cause: the seed article's
        ``1 - tf.keras.losses.cosine_similarity(y, p)``, which is 1 + cos because Keras'
        cosine_similarity already returns the negative cosine.

    Why it stalls training:
        The optimizer minimizes the loss, so it drives the predictions away from the
        targets. The loss falls a little (to its value at the worst reachable direction)
        and then sits there, while the true similarity gets worse.

    How to fix:
        Flip the sign: use ``tf.keras.losses.cosine_similarity(y, p)`` itself (it is already
        -cos, minimized at alignment), or ``1 + tf.keras.losses.cosine_similarity(y, p)``
        for a 1 - cos in [0, 2], or ``loss="cosine_similarity"`` in compile.

    Thresholds:
        min_inversion: (loss at cos +1 - loss at cos -1) / the loss's range over directions.
            A correctly signed loss measures -1 (its minimum is at alignment), an inverted
            one +1; anything above 0.5 is a sign error, far from float rounding.
    """

    id = "inverted-loss"
    area = "objective"
    per_output = True
    intervention = "flip-loss-sign"
    summary = "the loss falls as predictions point away from the targets"
    severity = Severity.ERROR
    thresholds = (Threshold("min_inversion", 0.5, "(loss(cos=+1) - loss(cos=-1)) / range"),)
    explains = ("saturated-activation", "vanishing-gradient", "dead-relu", "disconnected-gradient",
                "zero-norm-target", "large-output-norm", "learning-rate-too-low", "output-range-mismatch")
    invalidates_loss = True  # the loss's own progress means nothing

    def check(self, facts: Facts) -> list[Finding]:
        lp = need_probe(facts)
        inversion = (lp.aligned - lp.anti_aligned) / lp.range
        if inversion <= self.t["min_inversion"]:
            return []
        cos_note = ""
        pred = facts.predictions
        if pred is not None and np.isfinite(pred.cosine_mean).all() and pred.cosine_mean.size:
            cos_note = (f"; during the probe the mean cosine to the targets went "
                        f"{fmt(pred.cosine_mean[0])} -> {fmt(pred.cosine_mean[-1])}")
        return [self.finding(
            f"the loss is lower for predictions opposite to the targets ({fmt(lp.anti_aligned)}) than for "
            f"predictions equal to them ({fmt(lp.aligned)}): inversion {fmt(inversion)} > "
            f"{fmt(self.t['min_inversion'])} ({curve_text(lp)}){cos_note}",
            confidence=0.8 + 0.19 * ramp(inversion, self.t["min_inversion"], 1.0),
            evidence={"loss_aligned": lp.aligned, "loss_anti_aligned": lp.anti_aligned,
                      "alignment_curve": list(lp.alignment_curve), "inversion": inversion,
                      "threshold": self.t["min_inversion"]},
        )]


class DegenerateCosineAxis(Detector):
    """
    What it detects:
        A loss that does not respond to the predictions at all (its gradient with respect
        to a generic prediction is ~0) — the signature of a cosine over an axis of length 1,
        where cos = sign(y * p) = +-1 — or a cosine-shaped loss that couples samples across
        the batch, i.e. a cosine taken over the batch axis (``CosineSimilarity(axis=0)``, or
        (N,) targets against (N, 1) predictions, which Keras squeezes to (N,) and (N,)).

    Why it stalls training:
        Over a length-1 axis the cosine is piecewise constant: its gradient is exactly zero
        and no weight ever moves. Over the batch axis each feature is compared across
        samples instead of each sample's vector with its target: the model is graded on
        column correlations that change with the batch, not on its per-sample predictions.

    How to fix:
        Take the cosine over the feature axis of per-sample vectors (axis=-1) with targets
        shaped (N, D), D >= 2. For a scalar target, a cosine is meaningless: use mean
        squared error. Give targets and predictions the same shape (reshape y to (N, D)).

    Thresholds:
        min_sensitivity: |dL/dp| * |p| / range at a random prediction. Measured: 0.49-0.69
            for 1 - cos, -cos, MSE and MAE on 8-dim targets; 2e-7 for a cosine over a
            length-1 axis (float rounding of an exactly zero gradient).
        max_coupling: the loss's mixed difference over the batch's two halves / range. 0 for
            any sum or mean of per-sample terms (measured 1.4e-8, float32 rounding);
            6.8e-4 for CosineSimilarity(axis=0) and 8.5e-3 for (N,) vs (N, 1) on 64 samples.
    """

    id = "degenerate-cosine-axis"
    area = "objective"
    per_output = True
    intervention = "cosine-axis"
    summary = "the loss ignores the predictions (cosine over a length-1 axis) or mixes the batch"
    severity = Severity.ERROR
    thresholds = (
        Threshold("min_sensitivity", 1e-3, "|dL/dp| * |p| / range at a random prediction"),
        Threshold("max_coupling", 1e-5, "mixed difference of the loss over the batch halves / range"),
    )
    explains = ("vanishing-gradient", "disconnected-gradient", "learning-rate-too-low", "converged")
    invalidates_loss = True

    def check(self, facts: Facts) -> list[Finding]:
        lp = need_probe(facts)
        if lp.sensitivity < self.t["min_sensitivity"]:
            axis = (f"the cosine axis has length {lp.reduced_axis_length}: cos = sign(y * p) = +-1"
                    if lp.reduced_axis_length == 1 else
                    f"the last axis has length {lp.reduced_axis_length}")
            return [self.finding(
                f"the loss does not respond to the predictions: sensitivity {fmt(lp.sensitivity)} < "
                f"{fmt(self.t['min_sensitivity'])} ({axis}; its gradient is zero)",
                confidence=0.95,
                evidence={"sensitivity": lp.sensitivity, "reduced_axis_length": lp.reduced_axis_length,
                          "threshold": self.t["min_sensitivity"]},
            )]
        cosine_shaped = math.isfinite(lp.affine_residual) and lp.affine_residual < AFFINE_TOLERANCE
        # Of Keras' built-in losses only the cosine takes an axis argument; the others are
        # per-sample by construction (an MSE on unit vectors is cosine-shaped too).
        per_sample_builtin = facts.loss.kind is not None and "cosine" not in facts.loss.kind
        if lp.batch_axis_coupling > self.t["max_coupling"] and cosine_shaped and not per_sample_builtin:
            return [self.finding(
                f"the loss couples samples across the batch: coupling {fmt(lp.batch_axis_coupling)} > "
                f"{fmt(self.t['max_coupling'])} for a cosine-shaped loss — the cosine is taken over the "
                f"batch axis, not over each sample's last axis (targets per sample {facts.targets.shape[1:]})",
                confidence=0.7 + 0.25 * ramp(math.log10(lp.batch_axis_coupling / self.t["max_coupling"]), 0, 3),
                severity=Severity.WARNING,
                evidence={"batch_axis_coupling": lp.batch_axis_coupling, "affine_residual": lp.affine_residual,
                          "threshold": self.t["max_coupling"]},
            )]
        return []


class UnnormalizedCosineDistance(Detector):
    """
    What it detects:
        A cosine-shaped loss (affine in cos at fixed norm) that is not invariant to scale: it
        keeps falling when an already aligned prediction is made longer (``1 - sum(y * p)``,
        e.g. ``tf.compat.v1.losses.cosine_distance`` on vectors that were not L2-normalized,
        as the seed tutorial warns), or its value depends on the targets' scale.

    Why it stalls training:
        The loss rewards the prediction's norm, not its direction: the network inflates
        its outputs (the loss runs off towards -infinity, or jumps) instead of turning them
        towards the targets; with unnormalized targets, large-norm samples dominate and the
        loss's floor moves from batch to batch.

    How to fix:
        L2-normalize both sides over the feature axis before the product
        (``tf.math.l2_normalize(y, axis=-1)``, same for p), or use
        ``tf.keras.losses.cosine_similarity`` / ``keras.losses.CosineSimilarity``, which do it.

    Thresholds:
        max_norm_reward: (loss(y, y) - min over a in 1e-3..1e3 of loss(y, a*y)) / range.
            0 for a scale-invariant cosine and for MSE; measured 500 for 1 - y.p on 8-dim
            Gaussian targets. 0.01 = a perfect prediction gains 1% of the loss's range just
            by growing.
        max_target_scale_spread: for a loss invariant to the prediction's scale, the spread
            of loss(a*y, p) over a in 1e-3..1e3, / range (0 for a cosine; 250 when only p
            is normalized).
    """

    id = "unnormalized-cosine-distance"
    area = "objective"
    per_output = True
    summary = "a cosine loss computed on vectors that are not L2-normalized"
    severity = Severity.ERROR
    thresholds = (
        Threshold("max_norm_reward", 0.01, "loss gained by scaling an aligned prediction, / range"),
        Threshold("max_target_scale_spread", 0.01, "loss spread over target scales, / range"),
    )
    explains = ("large-output-norm", "exploding-gradient", "learning-rate-too-high", "saturated-activation")
    invalidates_loss = True

    def check(self, facts: Facts) -> list[Finding]:
        kind = facts.loss.kind
        if kind is not None and kind != "cosine_similarity":
            # A built-in that is not a cosine (a cross-entropy can look affine in cos at fixed norm).
            raise Skip(f"the loss is Keras' {kind}, not a cosine distance")
        lp = need_probe(facts)
        if not (math.isfinite(lp.affine_residual) and lp.affine_residual < AFFINE_TOLERANCE):
            raise Skip(f"the loss is not cosine-shaped (distance from affine in cos "
                       f"{fmt(lp.affine_residual)} >= {AFFINE_TOLERANCE})")
        if lp.norm_reward > self.t["max_norm_reward"]:
            best = int(np.nanargmin(lp.aligned_scale_curve))
            return [self.finding(
                f"the loss rewards the prediction's norm: an aligned prediction scaled x{fmt(lp.scale_factors[best])} "
                f"scores {fmt(lp.aligned_scale_curve[best])} against {fmt(lp.aligned)} at x1, a gain of "
                f"{fmt(lp.norm_reward)} of its range > {fmt(self.t['max_norm_reward'])}",
                confidence=0.9,
                evidence={"norm_reward": lp.norm_reward, "aligned_scale_curve": list(lp.aligned_scale_curve),
                          "scale_factors": list(lp.scale_factors), "threshold": self.t["max_norm_reward"]},
            )]
        if lp.is_cosine_like and lp.target_scale_spread > self.t["max_target_scale_spread"]:
            return [self.finding(
                f"the loss ignores the prediction's scale but not the target's: over target scales 1e-3..1e3 "
                f"it spans {fmt(lp.target_scale_spread)} of its range > {fmt(self.t['max_target_scale_spread'])} "
                f"(the targets are not L2-normalized inside the loss)",
                confidence=0.75, severity=Severity.WARNING,
                evidence={"target_scale_spread": lp.target_scale_spread,
                          "threshold": self.t["max_target_scale_spread"]},
            )]
        return []


class OutputRangeMismatch(Detector):
    """
    What it detects:
        An output activation whose range cannot reach the targets. Two measurements:
        - for a loss that compares values (mean squared or absolute error, Huber, a custom
          regression loss), the activation's range — sigmoid (0, 1), tanh (-1, 1), ReLU
          [0, inf), softmax [0, 1] per unit — against the targets' measured range, e.g. a
          sigmoid head for targets in 0..100. Class labels under a classification loss and
          a cosine (which sees only directions) are not compared this way;
        - for any loss the loss probe can measure, an output that never goes negative
          (measured over the probe; ReLU, softmax, sigmoid) while the targets have negative
          components, so that even the best prediction the output can make stays far from
          the targets. Reported with the best reachable cosine, mean |y+| / |y| (the
          direction of the targets' positive part), and the loss at the best reachable
          prediction.

    Why it stalls training:
        The network can only improve until its output reaches the edge of its range; from
        there, the gradient points out of the range (into negative values) and is cut off
        (ReLU units die, sigmoid/softmax saturate), so the loss plateaus well above its floor.

    How to fix:
        Use a linear output layer (activation=None) for signed targets — or tanh for targets
        in [-1, 1] — or rescale the targets into the output's range.

    Thresholds:
        max_reachable_gap: (loss at the best reachable prediction - loss at a perfect
            prediction) / range. 0.05 is a best reachable cosine of 0.9 for 1 - cos; measured
            0.17 (cos 0.65) for zero-mean Gaussian 8-dim targets.
        max_outside_share: the share of the targets' span (min..max over all features) that
            lies outside the activation's range: 0.99 for a sigmoid head on targets in
            0..100, 0.67 for tanh on standardized targets (+-3), 0 for targets scaled into the
            range. At 0.05 the unreachable part costs the few samples out there at most
            (0.05 x span)^2, 3% of the variance of targets spread uniformly over the span.
    """

    id = "output-range-mismatch"
    area = "objective"
    per_output = True
    intervention = "rescale-y-to-output"  # for value targets; a new activation would retrace
    summary = "an output activation whose range cannot reach the targets (e.g. sigmoid for targets in 0..100)"
    severity = Severity.ERROR
    thresholds = (
        Threshold("max_reachable_gap", 0.05, "(best reachable loss - floor) / range"),
        Threshold("max_outside_share", 0.05, "share of the targets' span outside the activation's range"),
    )
    explains = ("dead-relu", "saturated-activation", "vanishing-gradient", "disconnected-gradient",
                "zero-norm-target", "learning-rate-too-low", "large-output-norm", "unnormalized-target")

    def check(self, facts: Facts) -> list[Finding]:
        ranged = self._target_range(facts)
        if ranged:
            return ranged
        try:
            return self._unreachable_sign(facts)
        except Skip:
            if ranged is None:
                raise
            return []  # the range rule applied and passed: nothing was left unchecked

    def _target_range(self, facts: Facts) -> list[Finding] | None:
        """The activation's range against the targets' range; None when the rule does not apply."""
        act = facts.model.output_activation
        y = facts.targets
        pred = facts.predictions
        if act not in ACTIVATION_RANGES or not compares_values(facts) or y.features == 0:
            return None
        if pred is not None and tuple(pred.output_shape) != tuple(pred.target_shape):
            return None  # compared after a broadcast or an index: shape-mismatch's business
        lo, hi = float(np.nanmin(y.feature_min)), float(np.nanmax(y.feature_max))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        low, high = ACTIVATION_RANGES[act]
        outside = max(0.0, low - lo) + max(0.0, hi - high)
        span = hi - lo
        share = outside / span if span > 0 else float(outside > 0)
        if share <= self.t["max_outside_share"]:
            return []
        measured = f" (outputs measured {fmt(pred.output_min)} .. {fmt(pred.output_max)})" if pred else ""
        if math.isfinite(high):
            target = f"(y - {fmt(lo)}) / {fmt(span)}"
            if (low, high) != (0.0, 1.0):
                target = f"{fmt(low)} + {fmt(high - low)} * {target}"
            fix = (f"use a linear output layer (activation=None), with standardized targets (y - mean) / std; "
                   f"or keep {act} and rescale the targets into [{fmt(low)}, {fmt(high)}], e.g. {target}")
        else:
            fix = (f"use a linear output layer (activation=None): {act} never goes below {fmt(low)}, while the "
                   f"targets reach {fmt(lo)}")
        return [self.finding(
            f"the output activation {act} only reaches [{fmt(low)}, {fmt(high)}] but the targets span "
            f"{fmt(lo)} .. {fmt(hi)}: {fmt(share * 100)}% of their span is out of its reach > "
            f"{fmt(self.t['max_outside_share'] * 100)}%{measured}",
            confidence=0.8 + 0.15 * ramp(share, self.t["max_outside_share"], 0.5), fix=fix,
            evidence={"output_activation": act, "activation_range": [low, high if math.isfinite(high) else None],
                      "target_min": lo, "target_max": hi, "outside_share": share,
                      "output_min": pred.output_min if pred else None, "output_max": pred.output_max if pred else None,
                      "threshold": self.t["max_outside_share"]},
        )]

    def _unreachable_sign(self, facts: Facts) -> list[Finding]:
        """A non-negative output against signed targets, measured by the loss probe."""
        lp = need_probe(facts)
        if lp.output_range is None or lp.reachable_loss is None:
            raise Skip("the model's output went negative during the probe: its range is not limited")
        if lp.negative_target_fraction <= 0:
            return []
        gap = (lp.reachable_loss - lp.aligned) / lp.range
        if not math.isfinite(gap) or gap <= self.t["max_reachable_gap"]:
            return []
        act = facts.model.output_activation
        if act not in NON_NEGATIVE_ACTIVATIONS:
            # Measured non-negative, but nothing bounds it: a linear output that sits high
            # (a large bias) can still go negative.
            raise Skip(f"the output stayed >= 0 but its activation ({act or 'none'}) does not bound it")
        lo, hi = lp.output_range
        best = lp.positive_part_cosine
        top = fmt(facts.predictions.output_max) if facts.predictions else "?"
        return [self.finding(
            f"the output never went below {fmt(lo)} (max {top}, activation {act}) while "
            f"{fmt(lp.negative_target_fraction * 100)}% of target "
            f"components are negative: the best reachable cosine is {fmt(best)}, the best reachable loss "
            f"{fmt(lp.reachable_loss)} against a floor of {fmt(lp.aligned)} (gap {fmt(gap)} of its range > "
            f"{fmt(self.t['max_reachable_gap'])})",
            confidence=0.75 + 0.2 * ramp(gap, self.t["max_reachable_gap"], 0.5),
            evidence={"best_reachable_cosine": best, "reachable_loss": lp.reachable_loss, "floor": lp.aligned,
                      "reachable_gap": gap, "negative_target_fraction": lp.negative_target_fraction,
                      "output_range": [lo, hi if math.isfinite(hi) else None], "output_activation": act,
                      "threshold": self.t["max_reachable_gap"]},
        )]


def compares_values(facts: Facts) -> bool:
    """The loss compares the output's values with the targets' (a regression loss): not class
    labels under a classification loss, not a cosine, not a custom loss nothing is known of."""
    kind = facts.loss.kind
    if kind in CLASSIFICATION_LOSSES or kind == "cosine_similarity":
        return False
    lp = facts.loss_probe
    if lp is not None and lp.is_cosine_like:
        return False
    if facts.task is not None:
        return facts.task.kind == "regression"
    return kind is not None or lp is not None


class LargeOutputNorm(Detector):
    """
    What it detects:
        Predictions with a very large L2 norm (over the last axis) under a loss that is
        invariant to the prediction's scale (a cosine).

    Why it stalls training:
        The gradient of cos(y, p) with respect to p is perpendicular to p with size
        sin(angle) / |p|: at |p| = 1e3 it is a thousand times smaller than at |p| = 1, and the
        angle p turns per step falls as 1 / |p|^2. With Adam the step is fixed by the
        learning rate, but a weight with a huge norm turns by a tiny fraction of itself.

    How to fix:
        Find what inflates the output — a large initializer scale, unnormalized inputs, a
        missing normalization — or normalize it away: a LayerNormalization or
        UnitNormalization before the output, or L2-normalize the output.

    Thresholds:
        max_output_norm: median over steps of the mean prediction norm. Glorot-initialized
            layers on standardized inputs give norms of order sqrt(output dim) (measured
            1.5-6 on the sample models); 100 slows the angular step 1e3-1e4 times.
    """

    id = "large-output-norm"
    area = "objective"
    per_output = True
    intervention = "zero-output-bias"
    summary = "predictions so long that a cosine loss's gradient (1/|p|) vanishes"
    thresholds = (Threshold("max_output_norm", 100.0, "median prediction L2 norm"),)
    explains = ("vanishing-gradient", "learning-rate-too-low")

    def check(self, facts: Facts) -> list[Finding]:
        lp = need_probe(facts)
        pred = facts.predictions
        if pred is None or not np.isfinite(pred.output_norm_mean).any():
            raise Skip("no prediction norms measured (outputs and targets have different shapes)")
        if not lp.is_cosine_like:
            why = (f"it depends on the prediction's scale (spread {fmt(lp.scale_spread)})"
                   if lp.scale_spread >= 1e-3 else "it does not fall as predictions align with the targets")
            raise Skip(f"the loss does not behave like a cosine: {why}")
        norm = float(np.nanmedian(pred.output_norm_mean))
        if norm <= self.t["max_output_norm"]:
            return []
        target = float(np.nanmedian(pred.target_norm_mean))
        moving = facts.loss_moving
        progress = facts.progress
        # A cosine's gradient is perpendicular to p, so |p| grows as a model trains: with a
        # loss that still moves (measured on models at Adam lr 1 and SGD lr 1e3) it is a note.
        note = f"; the loss still moves ({fmt(progress * 100)}% of the way to its floor)" if moving else ""
        return [self.finding(
            f"predictions have mean L2 norm {fmt(norm)} > {fmt(self.t['max_output_norm'])} (targets {fmt(target)}): "
            f"a cosine's gradient shrinks as 1/|p|{note}",
            confidence=(0.6 + 0.35 * ramp(math.log10(norm / self.t["max_output_norm"]), 0, 2)) * (0.5 if moving else 1),
            severity=Severity.INFO if moving else None,
            evidence={"output_norm": norm, "target_norm": target, "progress": progress,
                      "threshold": self.t["max_output_norm"]},
        )]


class SingleUnitSoftmax(Detector):
    """
    What it detects:
        A softmax output over a single unit, e.g. ``Dense(1, activation="softmax")``. Softmax
        normalizes over the last axis, so over one unit it is exp(z) / exp(z) = 1 for every
        input. Measured from the output activation and the length of the output's last axis,
        with the outputs the probe measured (pinned at 1.0) as corroboration; a softmax
        written another way (a Lambda) is recognized by those outputs alone.

    Why it stalls training:
        The output is the constant 1 whatever the weights: the loss takes the same value for
        every weight, its gradient is exactly zero, and nothing learns. (The output layer
        then shows as 100% saturated: this is why.)

    How to fix:
        For two classes use ``Dense(1, activation="sigmoid")`` with binary_crossentropy; for
        K classes use ``Dense(K, activation="softmax")`` with categorical_crossentropy
        (one-hot labels) or sparse_categorical_crossentropy (class ids).

    Thresholds:
        max_pinned_spread: outputs count as pinned at 1 when their measured max - min over
            the probe, and their distance from 1, are below this. A softmax over one unit
            gives exactly 1.0 in float32 (spread 0); any output that responds to its input
            varies by far more than 1e-6.
    """

    id = "single-unit-softmax"
    area = "objective"
    per_output = True
    intervention = "replace-output-activation"
    summary = "a softmax over one output unit: the output is always 1"
    severity = Severity.ERROR
    thresholds = (Threshold("max_pinned_spread", 1e-6, "max - min (and distance from 1) of pinned outputs"),)
    explains = ("saturated-activation", "vanishing-gradient", "disconnected-gradient", "converged",
                "learning-rate-too-low")
    invalidates_loss = True  # whatever the loss does (a regularizer falling), the output cannot change

    def check(self, facts: Facts) -> list[Finding]:
        act = facts.model.output_activation
        pred = facts.predictions
        units = output_units(facts)
        tol = self.t["max_pinned_spread"]
        pinned = (pred is not None and math.isfinite(pred.output_min) and math.isfinite(pred.output_max)
                  and pred.output_max - pred.output_min <= tol and abs(pred.output_max - 1.0) <= tol)
        measured = (f"; the probe measured outputs {fmt(pred.output_min)} .. {fmt(pred.output_max)}"
                    if pred is not None else "")
        evidence = {"output_activation": act, "output_units": units,
                    "output_min": pred.output_min if pred else None, "output_max": pred.output_max if pred else None,
                    "threshold": tol}
        if act != "softmax":
            # A softmax the config does not name (a Lambda, tf.nn.softmax): only the outputs show it.
            if units == 1 and pinned and act not in ACTIVATION_RANGES:
                return [self.finding(
                    f"the single output unit is pinned at 1.0 at every probe step{measured} (activation "
                    f"{act or 'none'}): the signature of a softmax over one unit",
                    confidence=0.7, evidence=evidence)]
            return []
        if units is None:
            raise Skip("the length of the output's last axis was not measured")
        if units != 1:
            return []
        moved = math.isfinite(facts.raw_progress) and facts.raw_progress >= FLAT_PROGRESS
        effect = ("; the loss still moves (Keras' cross-entropy reads the logit behind the softmax, as in fit), "
                  "but every prediction stays 1: accuracy cannot change" if moved else
                  ", so the loss cannot change and its gradient is exactly zero")
        return [self.finding(
            f"the output layer applies softmax over 1 unit: softmax(z) = exp(z) / exp(z) = 1 for every input"
            f"{measured}{effect}",
            confidence=0.99 if pinned or pred is None else 0.9, evidence=evidence)]


class LossOutputMismatch(Detector):
    """
    What it detects:
        A built-in Keras loss that does not fit the output activation or the targets it is
        given. Each case is its own finding, with what was measured:
        - from_logits=True on a softmax or sigmoid output (probabilities squashed twice);
        - from_logits=False cross-entropy on an output that is not a probability (linear,
          ReLU...) and was measured outside [0, 1];
        - binary cross-entropy on one-hot labels over more than two classes with a softmax
          output, or on targets outside [0, 1];
        - categorical (or sparse categorical) cross-entropy over a single output unit;
        - sparse categorical cross-entropy on one-hot rows, or categorical cross-entropy on
          class ids;
        - mean squared or absolute error (Huber, log-cosh) on a softmax or sigmoid output
          against class labels.
        The loss is identified by its Keras function (``LossFacts.kind``); a custom loss is
        skipped.

    Why it stalls training:
        Each pairing removes the gradient the loss is meant to give. A second softmax over
        probabilities in [0, 1] caps the true class at e / (e + K - 1), 0.23 for K = 10, so
        the loss cannot fall below ln(e + K - 1) - 1 (1.46); a second sigmoid keeps every
        prediction in [0.5, 0.73]. A cross-entropy clips outputs outside [0, 1] to
        [1e-7, 1 - 1e-7], where its gradient is zero. Binary cross-entropy over a softmax
        spends K - 1 of every K terms on zeros the softmax already gives, and Keras reports
        binary accuracy ((K - 1) / K for predicting no class). Over one unit a categorical
        cross-entropy normalizes the output to 1 and is 0 for every prediction. Sparse and
        one-hot labels read against each other compare the wrong numbers, or fail outright.
        Squared or absolute error through a sigmoid has the gradient (p - y) p (1 - p),
        which vanishes where a unit saturates, on the wrong side too; the log in a
        cross-entropy is what cancels it (Goodfellow, Bengio and Courville, Deep Learning,
        2016, section 6.2.2.2).

    How to fix:
        Match the three: a softmax output with categorical_crossentropy (one-hot labels) or
        sparse_categorical_crossentropy (class ids); a sigmoid output with
        binary_crossentropy (0/1 labels, one or several per sample); a linear output with
        from_logits=True for either; a linear output with mean squared error for real-valued
        targets. Each finding names the change for its case.

    Thresholds:
        max_outside: how far outside [0, 1] a measured output or target may lie and still
            count as a probability. Float32 rounding and Keras' clipping epsilon are ~1e-7;
            a linear head at initialization spans about +-2 (Glorot weights on standardized
            inputs); 1e-3 is orders of magnitude from both.
    """

    id = "loss-output-mismatch"
    area = "objective"
    per_output = True
    intervention = "swap-loss"
    summary = "a loss that does not fit the output activation or the targets (from_logits, sparse vs one-hot...)"
    severity = Severity.ERROR
    thresholds = (Threshold("max_outside", 1e-3, "distance outside [0, 1] still counted as a probability"),)
    # Clipped, normalized-to-1 or doubly squashed outputs: saturated units, gradients that are
    # zero or tiny, a loss already at 0 (one unit) that looks converged.
    explains = ("saturated-activation", "vanishing-gradient", "disconnected-gradient", "converged",
                "learning-rate-too-low")
    invalidates_loss = True  # the loss measures something other than the intended fit

    def check(self, facts: Facts) -> list[Finding]:
        kind = facts.loss.kind
        if kind is None:
            raise Skip("the loss is not a Keras built-in: what it expects of the output and targets is unknown")
        cases = (self._logits_twice, self._not_probabilities, self._binary_on_one_hot, self._binary_targets_outside,
                 self._one_unit, self._sparse_vs_one_hot, self._value_loss_on_probabilities)
        return [f for case in cases if (f := case(facts, kind)) is not None]

    # -- the cases: each returns one finding or None ----------------------------------------------

    def _logits_twice(self, facts: Facts, kind: str) -> Finding | None:
        act = facts.model.output_activation
        units = output_units(facts)
        if kind not in FROM_LOGITS_LOSSES or facts.loss.from_logits is not True or act not in PROBABILITY_ACTIVATIONS:
            return None
        pred = facts.predictions
        seen = f" (measured {fmt(pred.output_min)} .. {fmt(pred.output_max)})" if pred is not None else ""
        if act == "softmax":
            if units is None or units < 2:
                return None
            cap = math.e / (math.e + units - 1)
            floor = math.log(math.e + units - 1) - 1
            effect = (f"the loss applies softmax again to probabilities in [0, 1]{seen}, which caps the true class "
                      f"at e / (e + {units} - 1) = {fmt(cap)}: the loss cannot fall below {fmt(floor)}")
            evidence = {"probability_cap": cap, "loss_bound": floor}
        else:
            effect = (f"the loss applies sigmoid again to probabilities in [0, 1]{seen}, which keeps every prediction "
                      f"in [0.5, 0.731]: no sample can be predicted as class 0, whose loss stays >= ln 2 = 0.693")
            evidence = {"prediction_range": [0.5, 0.731]}
        fix = (f"remove the {act} from the output layer (activation=None) and keep from_logits=True, or keep the "
               f"{act} and set from_logits=False")
        evidence = {"case": "from-logits-on-probabilities", "loss": kind, "from_logits": True,
                    "output_activation": act, "output_units": units, **evidence,
                    "output_carries_logits": facts.model.output_carries_logits, "threshold": None}
        if facts.model.output_carries_logits:
            # Keras' TensorFlow cross-entropies then read the logits behind the activation,
            # whatever from_logits says: the step trains as intended, here.
            return self.finding(
                f"{kind} has from_logits=True but the output layer already applies {act}; the probe measured that "
                f"the output keeps the logits behind its {act}, which Keras' cross-entropy reads instead (with a "
                f"warning), so training is not affected here — elsewhere (another backend, a model that reshapes "
                f"its output) {effect}",
                confidence=0.9, severity=Severity.INFO, fix=fix, evidence=evidence)
        return self.finding(
            f"{kind} has from_logits=True but the output layer already applies {act}: {effect}",
            confidence=0.95, fix=fix, evidence=evidence)

    def _not_probabilities(self, facts: Facts, kind: str) -> Finding | None:
        act = facts.model.output_activation
        pred = facts.predictions
        if kind not in FROM_LOGITS_LOSSES or facts.loss.from_logits is not False or act in PROBABILITY_ACTIVATIONS:
            return None
        if pred is None or not (math.isfinite(pred.output_min) and math.isfinite(pred.output_max)):
            return None  # the range it was measured in is what tells
        tol = self.t["max_outside"]
        if pred.output_min >= -tol and pred.output_max <= 1 + tol:
            return None
        units = output_units(facts)
        squash = "sigmoid" if kind in BINARY_LOSSES or units == 1 else "softmax"
        how = ("divides each row by its sum and clips it" if kind in CATEGORICAL_LOSSES else "clips them")
        return self.finding(
            f"{kind} expects probabilities (from_logits=False) but the output is {act or 'linear'} and was measured "
            f"in {fmt(pred.output_min)} .. {fmt(pred.output_max)}, outside [0, 1] by more than {fmt(tol)}: "
            f"Keras {how} into [1e-7, 1 - 1e-7], where the gradient is zero",
            confidence=0.9,
            fix=f"set from_logits=True and keep the {act or 'linear'} output, or give the output layer a {squash} "
                f"activation",
            evidence={"case": "probabilities-expected", "loss": kind, "from_logits": False, "output_activation": act,
                      "output_min": pred.output_min, "output_max": pred.output_max, "threshold": tol})

    def _binary_on_one_hot(self, facts: Facts, kind: str) -> Finding | None:
        task = facts.task
        if kind not in BINARY_LOSSES or facts.model.output_activation != "softmax" or task is None:
            return None
        if task.label_format != "one-hot" or task.classes is None or task.classes <= 2:
            return None
        k = task.classes
        return self.soft_finding(
            facts,
            f"{kind} on one-hot labels over {k} classes with a softmax output: it scores each of the {k} units as "
            f"a separate yes/no, so {k - 1} of every {k} terms reward zeros the softmax already gives, and Keras' "
            f"accuracy becomes binary accuracy ({fmt((k - 1) / k * 100)}% for predicting no class at all)",
            fix="use categorical_crossentropy with the softmax output (or sparse_categorical_crossentropy with "
                "class ids)",
            evidence={"case": "binary-on-one-hot", "loss": kind, "label_format": "one-hot", "classes": k,
                      "output_activation": "softmax", "threshold": None})

    def _binary_targets_outside(self, facts: Facts, kind: str) -> Finding | None:
        y = facts.targets
        if kind not in BINARY_LOSSES or y.features == 0:
            return None
        lo, hi = float(np.nanmin(y.feature_min)), float(np.nanmax(y.feature_max))
        tol = self.t["max_outside"]
        if not (math.isfinite(lo) and math.isfinite(hi)) or (lo >= -tol and hi <= 1 + tol):
            return None
        return self.finding(
            f"{kind} on targets outside [0, 1] (measured {fmt(lo)} .. {fmt(hi)}, beyond {fmt(tol)}): for a target "
            f"above 1 (or below 0) the loss has no minimum inside (0, 1) and runs to Keras' clip at 1e-7, where "
            f"the gradient is zero",
            confidence=0.9,
            fix="rescale the targets into [0, 1] (or to 0/1 labels), or use mean squared error with a linear "
                "output for real-valued targets",
            evidence={"case": "binary-targets-outside", "loss": kind, "target_min": lo, "target_max": hi,
                      "threshold": tol})

    def _one_unit(self, facts: Facts, kind: str) -> Finding | None:
        units = output_units(facts)
        if units != 1 or kind not in CATEGORICAL_LOSSES | SPARSE_LOSSES:
            return None
        fix = ("for two classes use a sigmoid output with binary_crossentropy; for K classes give the output "
               "layer K units")
        evidence = {"case": "one-unit", "loss": kind, "output_units": 1, "threshold": None}
        if kind in SPARSE_LOSSES:
            y = facts.targets
            top = float(np.nanmax(y.feature_max)) if y.features else float("nan")
            labels = f", while the labels go up to {fmt(top)}" if math.isfinite(top) and top > 0 else ""
            return self.finding(
                f"{kind} over a single output unit: the only class it knows is 0{labels}",
                confidence=0.9, fix=fix, evidence=evidence)
        return self.finding(
            f"{kind} over a single output unit: it normalizes the output over the last axis (each row divided by "
            f"its sum, or a softmax of one logit), which is always 1, so the loss is 0 for every prediction and "
            f"its gradient is exactly zero",
            confidence=0.95, fix=fix, evidence=evidence)

    def _sparse_vs_one_hot(self, facts: Facts, kind: str) -> Finding | None:
        task = facts.task
        if task is None or task.label_format is None:
            return None
        shape = tuple(facts.targets.shape[1:])
        if kind in SPARSE_LOSSES and task.label_format in ("one-hot", "soft", "multi-label"):
            fix = ("use binary_crossentropy with a sigmoid output for several labels per sample"
                   if task.label_format == "multi-label" else
                   "use categorical_crossentropy, or pass class ids: y.argmax(axis=-1)")
            return self.finding(
                f"{kind} expects one class id per sample, but the targets are {task.label_format} rows of length "
                f"{task.classes} (per-sample shape {shape})",
                confidence=0.95, fix=fix,
                evidence={"case": "sparse-loss-on-rows", "loss": kind, "label_format": task.label_format,
                          "classes": task.classes, "target_shape": list(shape), "threshold": None})
        if kind in CATEGORICAL_LOSSES and task.label_format == "sparse":
            units = output_units(facts)
            y = facts.targets
            ids = (f", {fmt(float(np.nanmin(y.feature_min)))} .. {fmt(float(np.nanmax(y.feature_max)))}"
                   if y.features else "")
            return self.finding(
                f"{kind} expects one-hot rows of length {units}, but the targets are class ids (one per sample"
                f"{ids}, per-sample shape {shape})",
                confidence=0.95,
                fix=f"use sparse_categorical_crossentropy, or one-hot encode the labels: "
                    f"keras.utils.to_categorical(y, {units})",
                evidence={"case": "categorical-loss-on-ids", "loss": kind, "label_format": "sparse",
                          "output_units": units, "target_shape": list(shape), "threshold": None})
        return None

    def _value_loss_on_probabilities(self, facts: Facts, kind: str) -> Finding | None:
        act = facts.model.output_activation
        if kind not in VALUE_LOSSES or act not in PROBABILITY_ACTIVATIONS:
            return None
        y = facts.targets
        task = facts.task
        labels01 = (y.integer_valued and y.features > 0 and float(np.nanmin(y.feature_min)) >= 0
                    and float(np.nanmax(y.feature_max)) <= 1)
        if not (labels01 or (task is not None and task.kind == "classification")):
            return None
        slope = "sign(p - y)" if kind == "mean_absolute_error" else "(p - y)"
        crossentropy = "categorical_crossentropy" if act == "softmax" else "binary_crossentropy"
        return self.soft_finding(
            facts,
            f"{kind} on a {act} output against class labels: its gradient through the {act} is {slope} x p(1 - p), "
            f"which vanishes wherever a unit saturates, on the wrong side too, so confidently wrong outputs stop "
            f"learning",
            fix=f"use {crossentropy}: its log cancels the {act}'s flat tails",
            evidence={"case": "value-loss-on-probabilities", "loss": kind, "output_activation": act,
                      "threshold": None})

    def soft_finding(self, facts: Facts, message: str, *, fix: str, evidence: dict) -> Finding:
        """A pairing that slows training rather than blocking it: a note while the loss still moves."""
        moving = facts.loss_moving
        note = f"; the loss still moves ({fmt(facts.progress * 100)}% of the way to its floor)" if moving else ""
        return self.finding(message + note, confidence=0.85 * (0.5 if moving else 1), fix=fix, evidence=evidence,
                            severity=Severity.INFO if moving else None)


def output_units(facts: Facts) -> int | None:
    """Length of the output's last axis: from the model, else from the measured predictions."""
    if facts.model.output_units is not None:
        return int(facts.model.output_units)
    pred = facts.predictions
    if pred is not None and len(pred.output_shape):
        return int(pred.output_shape[-1])
    return None


class LossNotRebuilt(Detector):
    """
    What it detects:
        The model file declares a compiled loss (usually a custom function) that stalldoc
        could not rebuild, so the diagnosis ran under a substitute, cosine distance 1 - cos.

    Why it stalls training:
        It does not by itself; but the user's own loss is often the cause (a wrong sign, a
        norm, an axis), and a diagnosis under another loss cannot see it: the model may look
        healthy under 1 - cos while it stalls under the real objective.

    How to fix:
        Give stalldoc the function: --loss path/to/file.py:FUNCTION (or
        package.module:FUNCTION). It is registered under its name, so the model's compiled
        loss deserializes too.

    Thresholds:
        (none)
    """

    id = "loss-not-rebuilt"
    area = "objective"
    per_output = True
    summary = "the model's own compiled loss could not be rebuilt; a substitute was used"
    severity = Severity.WARNING
    caveat = True

    def check(self, facts: Facts) -> list[Finding]:
        missing = facts.loss.substitute_for
        if not missing:
            return []
        named = missing != "?"
        what = f"{missing!r}" if named else "(unnamed in the file)"
        return [self.finding(
            f"the model's compiled loss {what} could not be rebuilt; this diagnosis used {facts.loss.name} "
            "instead and cannot see faults in the real loss",
            confidence=0.9,
            fix=f"pass the function: --loss FILE.py:{missing if named else 'FUNCTION'}",
            evidence={"declared_loss": missing if named else None, "used": facts.loss.name},
        )]


DETECTORS = (LossNotRebuilt, SingleUnitSoftmax, LossOutputMismatch, InvertedLoss, DegenerateCosineAxis,
             UnnormalizedCosineDistance, OutputRangeMismatch, LargeOutputNorm)
