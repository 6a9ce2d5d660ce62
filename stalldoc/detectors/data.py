"""Detectors on the dataset itself: what the network is fed and asked to predict.

Inputs: non-finite-data, constant-input, unnormalized-input. Targets: unnormalized-target,
shape-mismatch, constant-target, zero-norm-target (the last three ask the loss probe whether
the loss compares, or can use, what the targets hold).
"""

from __future__ import annotations

import math

import numpy as np

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt, need_probe, ramp, used_as_indices
from stalldoc.facts import ACTIVATION_RANGES, Facts
from stalldoc.findings import Finding, Severity

# The largest per-feature RMS sqrt(mean^2 + std^2) that still counts as unit scale, for inputs
# and targets alike: Glorot/He initializers assume unit-variance inputs and produce outputs of
# order 1, so 10 is an order of magnitude past what a freshly initialized layer expects.
UNIT_SCALE_MAX_RMS = 10.0
# A feature whose standard deviation is below this does not vary (float32 rounding of a
# constant column gives ~1e-9 relative noise at unit scale).
CONSTANT_STD = 1e-8


class NonFiniteData(Detector):
    """
    What it detects:
        NaN or Inf values in the inputs or the targets.

    Why it stalls training:
        One non-finite value turns the loss and every gradient of the batch that holds it
        into NaN; the optimizer then writes NaN into the weights and training is over.

    How to fix:
        Find and drop or impute the non-finite entries (np.isfinite), and check the
        preprocessing step that produced them (a division by zero, a log of zero).

    Thresholds:
        max_fraction: fraction of non-finite entries tolerated (0: any NaN/Inf is reported).
    """

    id = "non-finite-data"
    area = "data"
    summary = "NaN or Inf values in inputs or targets"
    severity = Severity.ERROR
    thresholds = (Threshold("max_fraction", 0.0, "fraction of non-finite entries tolerated"),)
    explains = ("exploding-gradient", "learning-rate-too-high", "vanishing-gradient",
                "disconnected-gradient", "saturated-activation", "dead-relu")

    def check(self, facts: Facts) -> list[Finding]:
        out = []
        for arr in [*facts.inputs, *facts.all_targets]:
            total = max(1, int(np.prod(arr.shape)))
            fraction = arr.non_finite / total
            if arr.non_finite and fraction > self.t["max_fraction"]:
                out.append(self.finding(
                    f"{arr.name} holds {arr.non_finite} non-finite values (NaN/Inf), "
                    f"{fmt(fraction * 100)}% of its entries > {fmt(self.t['max_fraction'] * 100)}%",
                    confidence=1.0,
                    evidence={"array": arr.name, "non_finite": arr.non_finite,
                              "fraction": fraction, "threshold": self.t["max_fraction"]},
                ))
        return out


class ConstantInput(Detector):
    """
    What it detects:
        Inputs whose features do not vary across samples (standard deviation ~ 0).

    Why it stalls training:
        If every sample looks the same, the network can only learn one output for all of
        them: the loss falls to the "predict the average target" level and stays there.

    How to fix:
        Check the data pipeline: a wrong key or column, a broadcast that copied one row,
        a normalization that divided by a huge number, or an image loader returning blanks.

    Thresholds:
        min_std: a feature with standard deviation below this is constant.
        max_constant_fraction: report when more than this fraction of features is constant.
    """

    id = "constant-input"
    area = "data"
    summary = "input features that do not vary across samples"
    severity = Severity.ERROR
    thresholds = (
        Threshold("min_std", CONSTANT_STD, "a feature with std below this is constant"),
        Threshold("max_constant_fraction", 0.99, "fraction of constant features that is reported"),
    )
    explains = ("vanishing-gradient", "saturated-activation", "dead-relu", "converged")

    def check(self, facts: Facts) -> list[Finding]:
        out = []
        for arr in facts.inputs:
            if arr.samples < 2:
                raise Skip("fewer than 2 samples: variation cannot be measured")
            if arr.features == 0:
                continue
            constant = float(np.mean(arr.feature_std < self.t["min_std"]))
            if constant >= self.t["max_constant_fraction"]:
                out.append(self.finding(
                    f"{arr.name}: {fmt(constant * 100)}% of {arr.features} features are constant "
                    f"(std < {fmt(self.t['min_std'])}) >= {fmt(self.t['max_constant_fraction'] * 100)}%",
                    confidence=0.95,
                    evidence={"array": arr.name, "constant_fraction": constant,
                              "threshold": self.t["max_constant_fraction"],
                              "max_std": float(np.max(arr.feature_std))},
                ))
        return out


class UnnormalizedInput(Detector):
    """
    What it detects:
        Input features far from unit scale: a large feature magnitude (RMS), or features
        whose spreads differ by orders of magnitude. Inputs that hold ids are exempt, whatever
        their dtype: those the model consumes as indices, and integer-valued, non-negative
        inputs of a model with an Embedding (or another index layer) — standardizing token
        ids would destroy them.

    Why it stalls training:
        Large inputs make the first layer's pre-activations huge, which drives sigmoid and
        tanh units into their flat tails (saturation) and makes gradients vanish; features
        on very different scales make the loss surface ill-conditioned for one learning rate.

    How to fix:
        Standardize each feature, (x - mean) / std computed on the training set, or put a
        keras.layers.Normalization layer (adapted to the data) at the model's input.

    Thresholds:
        max_rms: the largest per-feature RMS sqrt(mean^2 + std^2) allowed.
        max_mean_abs: the mean over features of |feature mean| allowed.
        max_scale_spread: ratio of the largest feature std to the median (non-constant) one.
    """

    id = "unnormalized-input"
    area = "data"
    intervention = "standardize-x"
    summary = "inputs far from unit scale, or features on very different scales"
    severity = Severity.ERROR
    thresholds = (
        Threshold("max_rms", UNIT_SCALE_MAX_RMS, "largest per-feature RMS allowed"),
        Threshold("max_mean_abs", 5.0, "mean |feature mean| allowed"),
        Threshold("max_scale_spread", 1e3, "largest/median feature std ratio allowed"),
    )
    explains = ("saturated-activation", "vanishing-gradient", "exploding-gradient", "dead-relu",
                "learning-rate-too-high", "large-output-norm")

    def check(self, facts: Facts) -> list[Finding]:
        out = []
        arrays = [a for a in facts.inputs if not used_as_indices(a, facts)]
        if not arrays:
            raise Skip("the model takes its inputs as integer indices (e.g. token ids), not magnitudes")
        for arr in arrays:
            if arr.features == 0 or arr.samples < 2:
                raise Skip("no features or fewer than 2 samples")
            rms = arr.feature_rms
            finite = np.isfinite(rms)
            if not finite.any():
                continue
            max_rms = float(np.max(rms[finite]))
            mean_abs = arr.mean_abs
            std = arr.feature_std[np.isfinite(arr.feature_std)]
            varying = std[std > CONSTANT_STD]
            # Against the median, not the minimum: a few faint features (the border pixels of
            # digit images, std ~3e-4 beside ~0.3) do not make a badly conditioned input.
            typical = float(np.median(varying)) if varying.size >= 2 else 0.0
            spread = float(varying.max() / typical) if typical > 0 else 1.0
            reasons, score = [], 0.0
            if max_rms > self.t["max_rms"]:
                reasons.append(f"largest feature RMS {fmt(max_rms)} > {fmt(self.t['max_rms'])}")
                score = max(score, ramp(math.log10(max_rms / self.t["max_rms"]), 0, 1))
            if mean_abs > self.t["max_mean_abs"]:
                reasons.append(f"mean |x| = {fmt(mean_abs)} > {fmt(self.t['max_mean_abs'])}")
                score = max(score, ramp(math.log10(mean_abs / self.t["max_mean_abs"]), 0, 1))
            if spread > self.t["max_scale_spread"]:
                reasons.append(f"the largest feature std {fmt(varying.max())} is {fmt(spread)}x the median "
                               f"{fmt(typical)} > {fmt(self.t['max_scale_spread'])}x")
                score = max(score, ramp(math.log10(spread / self.t["max_scale_spread"]), 0, 1))
            if not reasons:
                continue
            evidence = {"array": arr.name, "max_rms": max_rms, "mean_abs": mean_abs,
                        "scale_spread": spread, "threshold": self.t["max_rms"]}
            severity = None
            confidence = 0.6 + 0.35 * score
            message = f"{arr.name} is not normalized: " + "; ".join(reasons)
            seen = facts.first_weighted_input_rms
            rescaled = seen is not None and np.isfinite(seen) and seen <= self.t["max_rms"]
            if rescaled and spread <= self.t["max_scale_spread"]:
                # A preprocessing layer rescales the data before the first layer with weights.
                severity = Severity.INFO
                confidence *= 0.5
                message += f" (but the first layer with weights sees RMS {fmt(seen)}: the model rescales it)"
                evidence["first_weighted_input_rms"] = seen
            elif facts.loss_moving:
                # Advice, not the cause of a stall: the model learns at this scale.
                severity = Severity.INFO
                message += (f" (the loss still moves, {fmt(facts.progress * 100)}% of the way to its floor: "
                            "normalizing would help conditioning, it does not stall training here)")
            out.append(self.finding(message, confidence=confidence, evidence=evidence,
                                    severity=severity))
        return out


class UnnormalizedTarget(Detector):
    """
    What it detects:
        Targets far from unit scale (e.g. prices or counts in the thousands) under a loss
        whose value depends on the targets' scale (MSE, MAE, Huber — measured by scaling
        the targets in the loss probe; a cosine is exempt).

    Why it stalls training:
        A network initialized for unit-scale outputs must grow its output weights by orders
        of magnitude to reach such targets. With Adam, each step moves a weight by about the
        learning rate, so the loss crawls; with SGD the squared error's gradient is so large
        that the step explodes. Either way the gradients and the loss say "explosion" or
        "flat" while the cause is the targets' scale.

    How to fix:
        Standardize the targets, (y - mean) / std on the training set, train on that, and
        invert the transform at prediction time; or predict log(y) for positive quantities
        spanning decades.

    Thresholds:
        max_rms: the largest per-feature target RMS sqrt(mean^2 + std^2) allowed.
        min_target_scale_spread: the loss counts as scale-dependent when scaling the
            targets changes it by more than this share of its range.
    """

    id = "unnormalized-target"
    area = "data"
    per_output = True
    intervention = "standardize-y"
    summary = "regression targets far from unit scale under a scale-dependent loss"
    severity = Severity.ERROR
    thresholds = (
        Threshold("max_rms", UNIT_SCALE_MAX_RMS, "largest per-feature target RMS allowed"),
        Threshold("min_target_scale_spread", 0.01, "target-scale sensitivity of the loss"),
    )
    explains = ("exploding-gradient", "learning-rate-too-low", "learning-rate-too-high",
                "large-output-norm", "saturated-activation")

    def check(self, facts: Facts) -> list[Finding]:
        lp = facts.loss_probe
        if lp is None:
            raise Skip("the loss probe did not run: whether the loss depends on the targets' scale is unknown")
        y = facts.targets
        if y.features == 0:
            raise Skip("no target features")
        rms = y.feature_rms[np.isfinite(y.feature_rms)]
        if not rms.size:
            return []
        largest = float(rms.max())
        if largest <= self.t["max_rms"] or lp.target_scale_spread <= self.t["min_target_scale_spread"]:
            return []
        act = facts.model.output_activation
        fix = None
        if act in ACTIVATION_RANGES:
            # Standardized targets span about -3..3: a bounded head cannot reach them either.
            low, high = ACTIVATION_RANGES[act]
            fix = (f"{self.default_fix()} The output activation {act} only reaches [{fmt(low)}, {fmt(high)}]: "
                   f"give the output layer a linear activation (activation=None) too")
        return [self.finding(
            f"{y.name} is far from unit scale: largest target RMS {fmt(largest)} > {fmt(self.t['max_rms'])}, "
            f"and the loss depends on the targets' scale (spread {fmt(lp.target_scale_spread)} of its range)",
            confidence=0.6 + 0.35 * ramp(math.log10(largest / self.t["max_rms"]), 0, 2), fix=fix,
            evidence={"array": y.name, "max_rms": largest, "threshold": self.t["max_rms"],
                      "target_scale_spread": lp.target_scale_spread},
        )]


class ZeroNormTarget(Detector):
    """
    What it detects:
        Target vectors (over the last axis) that are all zeros, or model predictions that
        are all zeros, under a loss that needs a direction (scale-invariant, like a cosine)
        or that turns NaN on a zero vector (measured by putting one zero vector in the batch).

    Why it stalls training:
        The cosine of a zero vector is undefined: a naive loss divides by zero and returns
        NaN, which poisons every weight; a safe one (an epsilon in the norm) returns 0 with
        a zero gradient, so those samples teach nothing. All-zero predictions (a dead ReLU
        output) likewise give no gradient.

    How to fix:
        Drop or fix samples whose target is all zeros; add an epsilon in the norm
        (tf.math.l2_normalize does); for zero predictions, fix the output layer
        (a linear output for signed targets).

    Thresholds:
        max_zero_fraction: share of zero-norm target vectors tolerated by a NaN-safe loss.
        max_zero_prediction_fraction: share of zero-norm predictions tolerated.
    """

    id = "zero-norm-target"
    area = "data"
    per_output = True
    summary = "target or prediction vectors of zero norm under a cosine loss"
    severity = Severity.ERROR
    thresholds = (
        Threshold("max_zero_fraction", 0.1, "share of zero-norm target vectors (NaN-safe loss)"),
        Threshold("max_zero_prediction_fraction", 0.5, "share of zero-norm prediction vectors"),
    )
    explains = ("exploding-gradient", "disconnected-gradient", "vanishing-gradient", "learning-rate-too-high")

    def check(self, facts: Facts) -> list[Finding]:
        lp = need_probe(facts)
        out = []
        zero = facts.targets.zero_norm_fraction
        if zero > 0 and not lp.zero_target_finite:
            out.append(self.finding(
                f"{fmt(zero * 100)}% of target vectors have zero norm and the loss (or its gradient) is "
                f"NaN/Inf on a zero target > 0% tolerated",
                confidence=0.95,
                evidence={"zero_norm_fraction": zero, "loss_finite_at_zero": False, "threshold": 0.0}))
        elif lp.is_cosine_like and zero > self.t["max_zero_fraction"]:
            out.append(self.finding(
                f"{fmt(zero * 100)}% of target vectors have zero norm > {fmt(self.t['max_zero_fraction'] * 100)}%: "
                f"their cosine is undefined and they give no gradient",
                confidence=0.6 + 0.35 * ramp(zero, self.t["max_zero_fraction"], 1.0),
                severity=Severity.ERROR if zero >= 0.5 else Severity.WARNING,
                evidence={"zero_norm_fraction": zero, "threshold": self.t["max_zero_fraction"]}))
        pred = facts.predictions
        if pred is not None and (lp.is_cosine_like or not lp.zero_prediction_finite):
            per_step = pred.zero_norm_output_per_step
            if per_step is None or not len(per_step):
                per_step = np.array([pred.zero_norm_output_fraction])
            worst = int(np.argmax(per_step))
            share = float(per_step[worst])
            if share > self.t["max_zero_prediction_fraction"]:
                # At such a step a cosine's gradient scales as 1/|y_pred|: it is either huge or zero.
                out.append(self.finding(
                    f"{fmt(share * 100)}% of predictions have zero norm at step {worst + 1} > "
                    f"{fmt(self.t['max_zero_prediction_fraction'] * 100)}%: the cosine has no direction "
                    f"there and its gradient (1/|y_pred|) blows up or vanishes",
                    confidence=0.7, severity=Severity.WARNING,
                    evidence={"zero_norm_prediction_fraction": share, "step": worst + 1,
                              "mean_over_steps": pred.zero_norm_output_fraction,
                              "threshold": self.t["max_zero_prediction_fraction"]}))
        return out


class ConstantTarget(Detector):
    """
    What it detects:
        Targets that are the same for every sample — every feature's standard deviation is
        ~0 relative to the targets' scale — or, for a loss that only sees directions (a
        cosine), targets that all point the same way (the mean of the unit target vectors
        has length ~1).

    Why it stalls training:
        There is nothing to learn from the inputs: the network fits the constant with its
        output bias in a few steps and the loss then stays flat (at its floor, which looks
        like convergence but means the data is wrong).

    How to fix:
        Check the targets: a wrong key or column, a broadcast that copied one row, labels
        overwritten by a constant, or a normalization that removed all variation.

    Thresholds:
        max_relative_std: largest feature std / target RMS below which targets are constant.
        max_direction_concentration: |mean of unit target vectors| above which all targets
            point the same way (random directions in d dims give ~1/sqrt(n); measured 0.13
            for 64 Gaussian 8-dim targets).
    """

    id = "constant-target"
    area = "data"
    per_output = True
    summary = "targets that do not vary across samples (or, for a cosine, all point the same way)"
    severity = Severity.ERROR
    # Constant targets are predicted perfectly without x: the loss falling to its floor
    # says nothing about learning.
    invalidates_loss = True
    thresholds = (
        Threshold("max_relative_std", 1e-6, "largest feature std / target RMS"),
        Threshold("max_direction_concentration", 0.999, "|mean unit target vector|"),
    )
    explains = ("converged", "vanishing-gradient", "learning-rate-too-low")

    def check(self, facts: Facts) -> list[Finding]:
        t = facts.targets
        if t.samples < 2 or t.features == 0:
            raise Skip("fewer than 2 target samples")
        std = t.feature_std[np.isfinite(t.feature_std)]
        rms = t.feature_rms[np.isfinite(t.feature_rms)]
        scale = float(np.sqrt(np.mean(rms**2))) if rms.size else 0.0
        rel = float(std.max() / scale) if std.size and scale > 0 else 0.0
        if rel < self.t["max_relative_std"]:
            return [self.finding(
                f"{t.name} is the same for all {t.samples} samples: largest feature std / RMS = {fmt(rel)} < "
                f"{fmt(self.t['max_relative_std'])}",
                confidence=0.95,
                evidence={"relative_std": rel, "target_rms": scale, "threshold": self.t["max_relative_std"]})]
        lp = facts.loss_probe
        if lp is not None and lp.is_cosine_like and lp.reduced_axis_length >= 2 \
                and lp.direction_concentration > self.t["max_direction_concentration"]:
            return [self.finding(
                f"all {t.name} vectors point the same way: |mean unit target| = {fmt(lp.direction_concentration)} > "
                f"{fmt(self.t['max_direction_concentration'])}, and the loss sees only directions",
                confidence=0.85,
                evidence={"direction_concentration": lp.direction_concentration,
                          "threshold": self.t["max_direction_concentration"]})]
        return []


class ShapeMismatch(Detector):
    """
    What it detects:
        Targets and predictions whose per-sample shapes differ and that the loss compares
        elementwise after broadcasting, e.g. (N, 8) targets against (N, 1) predictions (one
        predicted value repeated against 8 target components). Measured: the loss accepts
        the pair, and (for integer targets) gives the same value on explicitly broadcast copies.
        Keras' own rank fix — (N,) against (N, 1) is squeezed — is applied first, as compile does.

    Why it stalls training:
        The model cannot express the target: a single value stretched over several
        components has one direction (+-(1, ..., 1)), so the loss stops at whatever that
        direction allows, whatever the network learns.

    How to fix:
        Make the output layer produce the target's shape (Dense(D) for (N, D) targets), or
        reshape the targets to the prediction's shape.

    Thresholds:
        (none: any broadcast between different per-sample shapes is reported)
    """

    id = "shape-mismatch"
    area = "data"
    per_output = True
    intervention = "output-units"
    summary = "targets and predictions of different shapes, broadcast against each other"
    severity = Severity.ERROR
    explains = ("converged", "vanishing-gradient", "learning-rate-too-low", "output-range-mismatch",
                "degenerate-cosine-axis")
    invalidates_loss = True  # the loss compares something other than each target with its prediction

    def check(self, facts: Facts) -> list[Finding]:
        lp = facts.loss_probe
        pred = facts.predictions
        if lp is None or pred is None:
            raise Skip("the loss could not be probed against the model's output shape")
        if lp.broadcast_shape is None:
            return []
        return [self.finding(
            f"targets of shape {pred.target_shape} per sample and predictions of shape {pred.output_shape} are "
            f"broadcast to {lp.broadcast_shape} inside the loss",
            confidence=0.9,
            evidence={"target_shape": list(pred.target_shape), "output_shape": list(pred.output_shape),
                      "broadcast_shape": list(lp.broadcast_shape), "threshold": None},
        )]


DETECTORS = (NonFiniteData, ConstantInput, UnnormalizedInput, UnnormalizedTarget, ShapeMismatch, ConstantTarget,
             ZeroNormTarget)
