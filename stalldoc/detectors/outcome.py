"""Detectors on what the loss did during the probe: at chance, slow, judged in the wrong mode,
or stalled with no cause found."""

from __future__ import annotations

import math

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt
from stalldoc.facts import FLAT_PROGRESS, MOVING_PROGRESS, Facts, loss_progress
from stalldoc.findings import Finding, Severity

# The horizon doubled at least twice: the loss needed 4x the planned steps to move.
SLOW_FACTOR = 4


def _baseline(facts: Facts) -> tuple[float, float]:
    """(baseline, floor) when both are known and the baseline lies above the floor."""
    loss = facts.loss
    if loss.baseline is None or not math.isfinite(loss.baseline):
        raise Skip("the constant-predictor baseline could not be measured for this loss")
    if loss.floor is None or not math.isfinite(loss.floor) or loss.baseline - loss.floor <= 1e-12:
        raise Skip("the loss has no known floor below its constant-predictor baseline")
    return loss.baseline, loss.floor


def _accuracy_text(facts: Facts) -> str:
    task = facts.task
    if task is None or task.accuracy_final is None:
        return ""
    chance = f" (always the most frequent class: {fmt(task.chance_accuracy * 100)}%)" \
        if task.chance_accuracy is not None else ""
    return f"; accuracy {fmt(task.accuracy_final * 100)}%{chance}"


class ChanceLevel(Detector):
    """
    What it detects:
        A loss that does not get below the loss of the best constant prediction — the
        prediction that ignores x (class frequencies for a cross-entropy, ln K for balanced
        classes; the mean target for MSE; the mean direction for a cosine). At the end of the
        probe the loss is less than ``min_share`` of the way from that baseline to the floor.
        A loss that falls *toward* the baseline from above is not learning either: the model
        is only finding the constant.

    Why it stalls training:
        Nothing the model outputs depends on its inputs: every gradient step only moves the
        output bias. Either a fault listed above cuts the signal (saturated or dead units, a
        vanishing gradient, a wrong loss), or the targets carry nothing the inputs can predict
        (labels shuffled against the inputs, misaligned rows, a broken join).

    How to fix:
        Fix the root cause listed before this finding, if there is one. If none: check that
        inputs and targets are aligned row by row (shuffle them together), that the labels
        are the ones you meant, and that a small subset can be overfitted (a model that
        cannot memorize 32 samples has a bug, not a data problem).

    Thresholds:
        min_share: (baseline - final loss) / (baseline - floor) below this is "at chance".
            The same 1% that calls a loss flat (FLAT_PROGRESS): measured 0.0-0.9% on stalled
            samples, 3% and more on models that train.
    """

    id = "chance-level"
    area = "outcome"
    per_output = True
    summary = "the loss stays at the constant-predictor level: nothing learned depends on x"
    thresholds = (Threshold("min_share", FLAT_PROGRESS, "(baseline - loss) / (baseline - floor) at the end"),)

    def check(self, facts: Facts) -> list[Finding]:
        baseline, floor = _baseline(facts)
        initial, final = facts.loss.verdict_values
        if not (math.isfinite(initial) and math.isfinite(final)):
            raise Skip("the loss became non-finite")
        share = (baseline - final) / (baseline - floor)
        if share >= self.t["min_share"]:
            return []
        gap = baseline - floor
        if initial - final > FLAT_PROGRESS * gap:
            how = "falls toward"
        elif final - baseline > gap:  # more than the whole baseline-to-floor distance above it
            how = "stays above"
        else:
            how = "stays at"
        return [self.finding(
            f"the loss {how} the constant-predictor level: {fmt(initial)} -> {fmt(final)} against "
            f"{fmt(baseline)} for a prediction that ignores x ({fmt(share * 100)}% of the way below it "
            f"< {fmt(self.t['min_share'] * 100)}%){_accuracy_text(facts)}",
            confidence=0.7 if share > -0.5 else 0.6,
            evidence={"initial": initial, "final": final, "baseline": baseline, "floor": floor,
                      "share_below_baseline": share, "threshold": self.t["min_share"]},
        )]


class SlowProgress(Detector):
    """
    What it detects:
        A loss that does fall below its constant-predictor baseline, but slowly: the probe's
        first steps left the trend undecided and it ran more steps (the adaptive horizon)
        before the loss moved clearly.

    Why it stalls training:
        It does not, yet: the model learns. Informational — training may need many epochs,
        or a larger learning rate or better-scaled inputs would make it faster.

    How to fix:
        Nothing is broken. To learn faster, try a larger learning rate (a learning-rate range
        test), a better-conditioned input scale, or normalization layers.

    Thresholds:
        none: reported when the horizon had to be doubled at least twice (SLOW_FACTOR x the
        planned steps) before the loss moved MOVING_PROGRESS of the way.
    """

    id = "slow-progress"
    area = "outcome"
    per_output = True
    summary = "the loss falls, but only after more steps than usual"
    severity = Severity.INFO

    def check(self, facts: Facts) -> list[Finding]:
        planned = facts.planned_steps
        if planned is None:
            raise Skip("the probe ran a fixed number of steps")
        progress = facts.progress
        if facts.steps < SLOW_FACTOR * planned or not math.isfinite(progress) or progress < MOVING_PROGRESS:
            return []
        return [self.finding(
            f"the loss falls slowly: {fmt(progress * 100)}% of the way to its floor after {facts.steps} steps "
            f"(undecided after {planned})",
            confidence=0.6,
            evidence={"progress": progress, "steps": facts.steps, "planned_steps": planned, "threshold": None},
        )]


class BatchNormLag(Detector):
    """
    What it detects:
        Training works in training mode but not in inference mode: on the same evaluation
        batch the training-mode loss (batch statistics, what ``fit`` minimizes) moves while
        the inference-mode loss (BatchNormalization's moving statistics) stays flat — the
        moving averages lag far behind the batch statistics (a momentum close to 1 on a
        fresh network).

    Why it stalls training:
        It does not: the weights learn. But ``evaluate``/``predict`` and validation metrics
        use the moving statistics, which with momentum 0.999 need thousands of steps to
        catch up — so validation looks stuck at chance while training works.

    How to fix:
        Use BatchNormalization's default momentum (0.99) or lower (0.9) for short runs; or
        keep training: the moving statistics catch up after ~1 / (1 - momentum) steps.

    Thresholds:
        none: training-mode progress >= MOVING_PROGRESS while inference-mode progress
        < FLAT_PROGRESS.
    """

    id = "batchnorm-lag"
    area = "outcome"
    per_output = True
    summary = "BatchNormalization's moving statistics lag: inference-mode loss flat while training works"
    severity = Severity.INFO

    def check(self, facts: Facts) -> list[Finding]:
        loss = facts.loss
        if loss.training_initial is None or loss.training_final is None:
            raise Skip("no BatchNormalization layer: training and inference mode compute the same")
        training = facts.progress
        inference = loss_progress(loss.initial, loss.final, loss.floor, loss.baseline)
        if not (math.isfinite(training) and training >= MOVING_PROGRESS):
            return []
        if math.isfinite(inference) and inference >= FLAT_PROGRESS:
            return []
        layers = [lf for lf in facts.layers if lf.momentum is not None]
        named = ", ".join(f"{lf.name} (momentum {fmt(lf.momentum)})" for lf in layers[:4]) or "?"
        return [self.finding(
            f"in training mode the loss moved {fmt(training * 100)}% of the way to its floor, in inference "
            f"mode {fmt(inference * 100)}%: BatchNormalization's moving statistics lag behind ({named})",
            confidence=0.7, layer=layers[0].name if layers else None,
            evidence={"training_progress": training, "inference_progress": inference,
                      "momentum": [lf.momentum for lf in layers], "threshold": MOVING_PROGRESS},
        )]


class UnexplainedStall(Detector):
    """
    What it detects:
        A stalled loss (flat, or at the constant-predictor level) for which no other detector
        found a cause at warning level or above. It runs after all the others, so a stalled
        verdict always carries a warning and the default gate never passes it.

    Why it stalls training:
        Unknown — which is why it is reported: a silent pass of a stalled model is the worst
        outcome a gate can have. The message says what was measured and what was tried.

    How to fix:
        Rerun with more steps (--steps 100) in case the model is only slow; try a learning-rate
        range test; overfit a tiny subset (32 samples) — if even that stays flat, the model or
        the loss has a bug; look at the per-layer table for the first layer whose gradient or
        activation collapses.

    Thresholds:
        none: it fires exactly when the verdict is "stalled" and nothing else explains it.
    """

    id = "unexplained-stall"
    area = "outcome"
    per_output = True
    summary = "the loss is stalled and no detector found why (so the gate never passes it silently)"
    after_verdict = True

    def conclude(self, facts: Facts, findings: list[Finding], ran: list[str]) -> list[Finding]:
        """The finding for a stalled verdict that no other warning explains (else nothing)."""
        initial, final = facts.loss.verdict_values
        progress = facts.progress
        baseline = facts.loss.baseline
        base_text = f", constant-predictor level {fmt(baseline)}" if baseline is not None else ""
        return [self.finding(
            f"the loss is stalled ({fmt(initial)} -> {fmt(final)} over {facts.steps} steps, "
            f"{fmt(progress * 100) if math.isfinite(progress) else 'nan'}% of the way to its floor{base_text}) "
            f"and none of the {len(ran)} detectors that ran found a cause at warning level",
            confidence=0.5,
            evidence={"initial": initial, "final": final, "progress": progress, "baseline": baseline,
                      "steps": facts.steps, "detectors_run": len(ran), "threshold": None},
        )]


DETECTORS = (ChanceLevel, SlowProgress, BatchNormLag, UnexplainedStall)
