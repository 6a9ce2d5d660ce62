"""Detectors on the dataset itself: what the network is fed and asked to predict."""

from __future__ import annotations

import math

import numpy as np

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt, ramp
from stalldoc.facts import Facts
from stalldoc.findings import Finding, Severity


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
    causal_rank = 0

    def check(self, facts: Facts) -> list[Finding]:
        out = []
        for arr in [*facts.inputs, facts.targets]:
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
        Threshold("min_std", 1e-8, "a feature with std below this is constant"),
        Threshold("max_constant_fraction", 0.99, "fraction of constant features that is reported"),
    )
    explains = ("vanishing-gradient", "saturated-activation", "dead-relu", "converged")
    causal_rank = 1

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
        whose spreads differ by orders of magnitude.

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
    summary = "inputs far from unit scale, or features on very different scales"
    severity = Severity.ERROR
    thresholds = (
        Threshold("max_rms", 10.0, "largest per-feature RMS allowed"),
        Threshold("max_mean_abs", 5.0, "mean |feature mean| allowed"),
        Threshold("max_scale_spread", 1e3, "largest/median feature std ratio allowed"),
    )
    explains = ("saturated-activation", "vanishing-gradient", "exploding-gradient", "dead-relu",
                "learning-rate-too-high", "large-output-norm")
    causal_rank = 2

    def check(self, facts: Facts) -> list[Finding]:
        out = []
        arrays = [a for a in facts.inputs if not a.consumed_as_indices]
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
            varying = std[std > 1e-8]
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
    summary = "regression targets far from unit scale under a scale-dependent loss"
    severity = Severity.ERROR
    thresholds = (
        Threshold("max_rms", 10.0, "largest per-feature target RMS allowed"),
        Threshold("min_target_scale_spread", 0.01, "target-scale sensitivity of the loss"),
    )
    explains = ("exploding-gradient", "learning-rate-too-low", "learning-rate-too-high",
                "large-output-norm", "saturated-activation")
    causal_rank = 2

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
        return [self.finding(
            f"{y.name} is far from unit scale: largest target RMS {fmt(largest)} > {fmt(self.t['max_rms'])}, "
            f"and the loss depends on the targets' scale (spread {fmt(lp.target_scale_spread)} of its range)",
            confidence=0.6 + 0.35 * ramp(math.log10(largest / self.t["max_rms"]), 0, 2),
            evidence={"array": y.name, "max_rms": largest, "threshold": self.t["max_rms"],
                      "target_scale_spread": lp.target_scale_spread},
        )]


DETECTORS = (NonFiniteData, ConstantInput, UnnormalizedInput, UnnormalizedTarget)
