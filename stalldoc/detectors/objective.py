"""Detectors on the objective: faults of the loss function and of what it compares.

They read ``facts.loss_probe`` (the loss measured on real targets and constructed
predictions, see ``stalldoc.probe.lossprobe``) and ``facts.predictions`` (the model's outputs
against the targets during the probe). None of them looks at a loss's or layer's name;
output-range-mismatch identifies the output activation by its function (ReLU, softmax,
sigmoid), as the model's config serializes it, and confirms its range on the outputs.
"""

from __future__ import annotations

import math

import numpy as np

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt, need_probe, ramp
from stalldoc.facts import NON_NEGATIVE_ACTIVATIONS, Facts, LossProbeFacts
from stalldoc.findings import Finding, Severity

# A loss whose value at fixed norm is within this share of its range from a line in cos is
# "cosine-shaped" (1 - cos, -cos and 1 - y.p are exactly affine: measured residual 0;
# mean absolute error 0.14).
AFFINE_TOLERANCE = 0.05


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
        if lp.batch_axis_coupling > self.t["max_coupling"] and cosine_shaped:
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
    summary = "a cosine loss computed on vectors that are not L2-normalized"
    severity = Severity.ERROR
    thresholds = (
        Threshold("max_norm_reward", 0.01, "loss gained by scaling an aligned prediction, / range"),
        Threshold("max_target_scale_spread", 0.01, "loss spread over target scales, / range"),
    )
    explains = ("large-output-norm", "exploding-gradient", "learning-rate-too-high", "saturated-activation")
    invalidates_loss = True

    def check(self, facts: Facts) -> list[Finding]:
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
        An output that never goes negative (measured over the probe; ReLU, softmax,
        sigmoid) while the targets have negative components, so that even the best
        prediction the output can make stays far from the targets. Reported with the best
        reachable cosine, mean |y+| / |y| (the direction of the targets' positive part),
        and the loss at the best reachable prediction.

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
    """

    id = "output-range-mismatch"
    area = "objective"
    summary = "a non-negative output (ReLU/softmax/sigmoid) against targets with negative components"
    severity = Severity.ERROR
    thresholds = (
        Threshold("max_reachable_gap", 0.05, "(best reachable loss - floor) / range"),
    )
    explains = ("dead-relu", "saturated-activation", "vanishing-gradient", "disconnected-gradient",
                "zero-norm-target", "learning-rate-too-low", "large-output-norm")

    def check(self, facts: Facts) -> list[Finding]:
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


DETECTORS = (LossNotRebuilt, InvertedLoss, DegenerateCosineAxis, UnnormalizedCosineDistance, OutputRangeMismatch,
             LargeOutputNorm)
