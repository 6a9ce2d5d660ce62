"""Detectors on the optimizer's steps and on where the loss ends: too small, too large, done."""

from __future__ import annotations

import math

import numpy as np

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt, ramp
from stalldoc.detectors.gradients import VANISHED_GRAD_RMS, grad_rms
from stalldoc.facts import Facts, VariableFacts
from stalldoc.findings import Finding, Severity


def kernel_update_ratios(facts: Facts) -> list[tuple[VariableFacts, float, float]]:
    """(kernel, median update/weight ratio, median gradient RMS) for connected kernels."""
    out = []
    for v in facts.connected_variables():
        if not v.is_kernel or v.update_ratio.size == 0:
            continue
        ratio = v.update_ratio[np.isfinite(v.update_ratio)]
        if ratio.size == 0:
            continue
        grad = grad_rms(v)
        out.append((v, float(np.median(ratio)), grad))
    return out


class LearningRateTooLow(Detector):
    """
    What it detects:
        Steps too small to move the weights while the gradient is there: even the kernel
        that moves most changes by less than ``min_update_ratio`` of its norm per step
        (median over the probe's steps), its gradient has not vanished, and the loss is flat.

    Why it stalls training:
        Training moves each weight by (learning rate x gradient) per step — for Adam, by
        about the learning rate per entry. At an update/weight ratio of 1e-5 a layer needs
        ~1e5 steps to change by its own size: the loss looks frozen.

    How to fix:
        Raise the learning rate (10x at a time; Adam's 1e-3 and SGD's 1e-2 are the usual
        starting points), or use a learning-rate finder; check that a schedule has not
        decayed it to nothing.

    Thresholds:
        min_update_ratio: largest per-kernel ||delta w|| / ||w|| per step. The usual rule of
            thumb (Karpathy, CS231n) is ~1e-3 for healthy training; measured 4e-3-6e-2 on
            models that train, 1.3e-6 with Adam at lr 1e-7; 1e-5 is 100x below the rule.
        min_grad_rms: that kernel's gradient RMS must be above this (otherwise the cause
            is a vanishing gradient, not the learning rate): vanishing-gradient's own
            min_grad_rms, 1e-7 (one constant, VANISHED_GRAD_RMS; override both together).
    """

    id = "learning-rate-too-low"
    area = "optimization"
    intervention = "learning-rate-sweep"
    summary = "updates far too small relative to the weights, while the gradient is there"
    thresholds = (
        Threshold("min_update_ratio", 1e-4, "largest per-kernel update/weight ratio per step"),
        Threshold("min_grad_rms", VANISHED_GRAD_RMS, "gradient RMS of that kernel (below: vanishing, not LR)"),
    )

    def check(self, facts: Facts) -> list[Finding]:
        stats = kernel_update_ratios(facts)
        if not stats:
            raise Skip("no connected kernels with measured updates")
        v, ratio, grad = max(stats, key=lambda s: s[1])
        if ratio >= self.t["min_update_ratio"] or grad < self.t["min_grad_rms"]:
            return []
        if facts.loss_moving:
            return []
        lr = facts.model.learning_rate
        return [self.finding(
            f"the largest update/weight ratio per step is {fmt(ratio)} ({v.path}) < {fmt(self.t['min_update_ratio'])} "
            f"while its gradient RMS is {fmt(grad)} (learning rate {fmt(lr) if lr is not None else 'unknown'}, "
            f"{facts.model.optimizer})",
            confidence=0.6 + 0.3 * ramp(math.log10(self.t["min_update_ratio"] / max(ratio, 1e-30)), 0, 2),
            layer=v.layer,
            evidence={"max_update_ratio": ratio, "variable": v.path, "grad_rms": grad, "learning_rate": lr,
                      "threshold": self.t["min_update_ratio"]},
        )]


class LearningRateTooHigh(Detector):
    """
    What it detects:
        Steps too large for the loss surface: the training loss turns NaN/Inf, or the loss
        ends higher than it started, or it stays flat while the weights change by more
        than ``max_update_ratio`` of their norm per step.

    Why it stalls training:
        A step much longer than the region where the gradient is a good guide overshoots
        the minimum: the loss oscillates or climbs, units saturate or die, and in the end
        the weights become NaN.

    How to fix:
        Lower the learning rate (10x at a time); clip gradients (clipnorm=1.0); add
        warm-up; normalize inputs so one learning rate suits every layer.

    Thresholds:
        max_update_ratio: largest per-kernel ||delta w|| / ||w|| per step, with a loss that
            does not fall. ~1e-3 is the healthy rule of thumb; 0.1 (100x) means the weights
            are rewritten in ten steps. Measured: 4e-3-6e-2 on models that train.
        max_rise: the loss ends higher than it started by more than this share of the way
            from its start to its floor.
    """

    id = "learning-rate-too-high"
    area = "optimization"
    intervention = "learning-rate-sweep"
    summary = "steps so large that the loss climbs, oscillates or turns NaN"
    thresholds = (
        Threshold("max_update_ratio", 0.1, "largest per-kernel update/weight ratio per step (flat loss)"),
        Threshold("max_rise", 0.1, "rise of the loss, as a share of the way to its floor"),
    )
    explains = ("saturated-activation", "dead-relu", "exploding-gradient")

    def check(self, facts: Facts) -> list[Finding]:
        per_step = facts.loss.per_step
        if facts.steps < 1 or per_step.size == 0:
            raise Skip("no training steps recorded")
        finite_data = all(a.non_finite == 0 for a in [*facts.inputs, *facts.all_targets])
        bad = ~np.isfinite(per_step)
        if finite_data and (bad.any() or not math.isfinite(facts.loss.final)):
            step = int(np.argmax(bad)) + 1 if bad.any() else facts.steps
            return [self.finding(
                f"the training loss became non-finite (NaN/Inf) at step {step} of {facts.steps}, on finite data",
                confidence=0.8, severity=Severity.ERROR,
                evidence={"first_non_finite_step": step, "threshold": None})]
        stats = kernel_update_ratios(facts)
        progress = facts.raw_progress  # the loss itself rising, whatever the baseline
        lr = facts.model.learning_rate
        lr_text = f"learning rate {fmt(lr) if lr is not None else 'unknown'}, {facts.model.optimizer}"
        if math.isfinite(progress) and progress < -self.t["max_rise"] and stats:
            v, ratio, _ = max(stats, key=lambda s: s[1])
            if ratio > self.t["max_update_ratio"] / 10:
                return [self.finding(
                    f"the loss rose {fmt(facts.loss.initial)} -> {fmt(facts.loss.final)} ({fmt(-progress * 100)}% of "
                    f"the way to its floor, backwards > {fmt(self.t['max_rise'] * 100)}%) with update/weight "
                    f"ratios up to {fmt(ratio)} per step ({lr_text})",
                    confidence=0.7, layer=v.layer,
                    evidence={"progress": progress, "max_update_ratio": ratio, "learning_rate": lr,
                              "threshold": self.t["max_rise"]})]
        if not stats:
            return []
        v, ratio, _ = max(stats, key=lambda s: s[1])
        if ratio > self.t["max_update_ratio"] and not facts.loss_moving:
            return [self.finding(
                f"weights change by {fmt(ratio)} of their norm per step ({v.path}) > {fmt(self.t['max_update_ratio'])} "
                f"while the loss does not fall ({lr_text})",
                confidence=0.6 + 0.3 * ramp(math.log10(ratio / self.t["max_update_ratio"]), 0, 1),
                layer=v.layer,
                evidence={"max_update_ratio": ratio, "variable": v.path, "learning_rate": lr,
                          "progress": progress, "threshold": self.t["max_update_ratio"]})]
        return []


class Converged(Detector):
    """
    What it detects:
        A loss that is flat because it is already at its minimum: it moved less than 1% of
        the way to its floor during the probe (or, far below its baseline, did not fall by
        5%: a fresh optimizer's first steps shake a trained model), and at the start and at
        the end of the probe
        it is either within ``max_gap`` of its range from the loss at a perfect prediction,
        loss(y, y) (for 1 - cos, range 2, a mean cosine above 0.98), or far below the loss
        of the best constant prediction: within ``max_baseline_share`` of the way from the
        floor to that baseline (a trained classifier at loss 0.05 against ln 10 = 2.3).
        Whatever its activations look like then (a confident softmax is saturated), the
        model is trained, not stalled.

    Why it stalls training:
        It does not: there is nothing left to learn on these data. This is informational
        (verdict "converged", exit code 0).

    How to fix:
        Nothing to fix. If the model is not good enough on held-out data, the limit is
        the data or the task (more data, a harder validation set), not the optimization.

    Thresholds:
        max_gap: (loss - floor) / range, at the start and at the end of the probe. The
            floor needs a loss minimized at alignment (see inverted-loss); without a loss
            probe the range is taken as max(|initial|, |floor|).
        max_baseline_share: (loss - floor) / (baseline - floor), at the start and at the
            end: a model that removed at least 75% of what a constant prediction leaves
            (R^2 >= 0.75 for MSE) learned its task.
    """

    id = "converged"
    area = "optimization"
    per_output = True
    summary = "the loss is flat because it is at its minimum"
    severity = Severity.INFO
    thresholds = (Threshold("max_gap", 0.01, "(loss - floor) / range"),
                  Threshold("max_baseline_share", 0.25, "(loss - floor) / (baseline - floor)"))

    def check(self, facts: Facts) -> list[Finding]:
        loss = facts.loss
        floor = loss.floor
        if floor is None or not math.isfinite(floor):
            raise Skip("the loss at a perfect prediction (its floor) could not be measured")
        if not (math.isfinite(loss.initial) and math.isfinite(loss.final)):
            return []
        lp = facts.loss_probe
        if lp is not None and lp.finite and lp.range > 0:
            if float(np.nanmin(lp.alignment_curve)) < lp.aligned - 1e-6 * lp.range:
                raise Skip("the loss is not minimized at a perfect prediction: loss(y, y) is no floor")
            span = lp.range
        else:
            span = max(abs(loss.initial), abs(floor), 1e-12)
        if facts.loss_moving:
            return []  # a loss still falling is not at its minimum, however close it is
        if not facts.loss_flat:
            return self._far_below_baseline(facts)  # a trained model wobbling under a fresh optimizer
        gaps = [(loss.initial - floor) / span, (loss.final - floor) / span]
        worst = max(gaps)
        if worst > self.t["max_gap"] or min(gaps) < -self.t["max_gap"]:
            return self._far_below_baseline(facts)
        return [self.finding(
            f"the loss stays at its floor: {fmt(loss.initial)} -> {fmt(loss.final)}, floor {fmt(floor)} "
            f"(gap {fmt(worst)} of its range <= {fmt(self.t['max_gap'])})",
            confidence=0.9,
            evidence={"initial": loss.initial, "final": loss.final, "floor": floor, "gap": worst,
                      "threshold": self.t["max_gap"]},
        )]

    def _far_below_baseline(self, facts: Facts) -> list[Finding]:
        loss = facts.loss
        floor, baseline = loss.floor, loss.baseline
        if baseline is None or not math.isfinite(baseline) or baseline - floor <= 1e-12:
            return []
        shares = [(value - floor) / (baseline - floor) for value in loss.verdict_values]
        worst = max(shares)
        if worst > self.t["max_baseline_share"]:
            return []
        accuracy = ""
        if facts.task is not None and facts.task.accuracy_final is not None:
            accuracy = f", accuracy {fmt(facts.task.accuracy_final * 100)}%"
        return [self.finding(
            f"the loss is flat far below the constant-predictor level: {fmt(loss.initial)} -> {fmt(loss.final)} "
            f"against {fmt(baseline)} for a prediction that ignores x ({fmt(worst * 100)}% of it left "
            f"<= {fmt(self.t['max_baseline_share'] * 100)}%){accuracy}",
            confidence=0.85,
            evidence={"initial": loss.initial, "final": loss.final, "floor": floor, "baseline": baseline,
                      "baseline_share": worst, "threshold": self.t["max_baseline_share"]},
        )]


class OptimizerPlateau(Detector):
    """
    What it detects:
        A model whose own optimizer (plain SGD, RMSprop...) leaves the loss flat at every
        learning rate a range test tries, while Adam from the same weights on the same batches
        trains. Found only by trying: the confirm stage runs it when nothing un-stalls the
        model and no detector found a cause (only chance-level or unexplained-stall say the
        loss is stuck); it is never measured from the probe's facts alone.

    Why it stalls training:
        Plain SGD moves every weight by the same multiple of its gradient: on a plateau, or
        where the gradients of different layers differ by orders of magnitude, no single rate
        works. Adam rescales each weight's step by its own gradient history.

    How to fix:
        Use Adam (at the rate the finding names), or add momentum and normalization
        (BatchNormalization, standardized inputs) so that one rate suits every layer.

    Thresholds:
        none of its own: Adam's run must pass the confirm stage's test (the loss moves at
            least MOVING_PROGRESS of the way, and clearly more than the model's own
            optimizer at its best swept rate).
    """

    id = "optimizer-plateau"
    area = "optimization"
    summary = "the model's optimizer cannot leave the plateau at any rate, Adam can (found by a confirm run)"
    after_verdict = True  # never run by the detectors stage: created by the confirm stage

    def check(self, facts: Facts) -> list[Finding]:
        return []


DETECTORS = (LearningRateTooHigh, LearningRateTooLow, Converged, OptimizerPlateau)
