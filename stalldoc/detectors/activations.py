"""Detectors on the forward signal: units that no longer pass a gradient back, and a signal
that vanishes or explodes on its way through the layers."""

from __future__ import annotations

import math

import numpy as np

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt, ramp, used_as_indices
from stalldoc.facts import RELU_FAMILY, SATURATING, Facts
from stalldoc.findings import Finding, Severity


def moving_note(facts: Facts) -> str:
    """'; the loss still moves (x% of the way to its floor)' when it does, else ''."""
    if not facts.loss_moving:
        return ""
    return f"; the loss still moves ({fmt(facts.progress * 100)}% of the way to its floor)"


class SaturatedActivation(Detector):
    """
    What it detects:
        Sigmoid, tanh or softmax layers whose outputs sit in the flat tails of the
        function. An output counts as saturated when the activation's local derivative
        there is below 5% of its peak (sigmoid below 0.013 or above 0.987, |tanh| > 0.975);
        a softmax row when 1 - sum(p^2) is below 5% of its value at the uniform
        distribution (one class takes almost all the mass).

    Why it stalls training:
        Backpropagation multiplies the gradient by that local derivative: a saturated unit
        passes almost nothing back, so the layers before it stop learning.

    How to fix:
        Normalize the inputs; use a variance-preserving initializer (glorot for
        sigmoid/tanh); add BatchNormalization before the activation; or switch hidden
        layers to ReLU/GELU. Lower the learning rate if saturation appears after a few steps.

    Thresholds:
        max_saturated_fraction: report a layer when more than this fraction of its outputs
            is saturated (median over the probe's steps). While the loss still moves, a
            saturated hidden layer is a note (info) and the output layer is not reported: a
            confident output is what training produces.
    """

    id = "saturated-activation"
    area = "activations"
    summary = "sigmoid/tanh/softmax layers stuck in their flat tails"
    describes_state = True
    thresholds = (
        Threshold("max_saturated_fraction", 0.5, "fraction of saturated outputs per layer"),
    )
    # A fully saturated float32 sigmoid returns exactly 0 or 1: its gradient is exactly zero.
    explains = ("vanishing-gradient", "disconnected-gradient")

    def check(self, facts: Facts) -> list[Finding]:
        layers = [lf for lf in facts.layers if lf.family == SATURATING and lf.saturated_fraction is not None]
        if not layers:
            raise Skip("no sigmoid/tanh/softmax layers with measured outputs")
        last_index = max(lf.index for lf in facts.layers)
        moving = facts.loss_moving
        out = []
        for lf in layers:
            fraction = float(np.median(lf.saturated_fraction))
            if fraction <= self.t["max_saturated_fraction"]:
                continue
            if lf.index == last_index and moving:
                # A confident output layer is expected once the loss falls.
                continue
            gain = float(np.median(lf.mean_gain)) if lf.mean_gain is not None else float("nan")
            out.append(self.finding(
                f"{fmt(fraction * 100)}% of {lf.activation} outputs in layer {lf.name!r} are saturated "
                f"> {fmt(self.t['max_saturated_fraction'] * 100)}% (mean derivative {fmt(gain * 100)}% of peak)"
                + moving_note(facts),
                confidence=(0.55 + 0.4 * ramp(fraction, self.t["max_saturated_fraction"], 1.0))
                * (0.5 if moving else 1),
                severity=Severity.INFO if moving else None,
                layer=lf.name,
                evidence={"saturated_fraction": fraction, "mean_gain": gain,
                          "threshold": self.t["max_saturated_fraction"], "activation": lf.activation},
            ))
        return out


class DeadRelu(Detector):
    """
    What it detects:
        ReLU-family layers where most units output zero for every sample of the batch.
        A unit is dead when it is active (> 0) on fewer than ``min_active_rate`` of the
        samples (and positions, for convolutions).

    Why it stalls training:
        ReLU's gradient is zero where its output is zero: a dead unit receives no gradient,
        never recovers, and cuts the gradient path to everything before it.

    How to fix:
        Lower the learning rate (a large step often kills units); use He initialization and
        zero or small positive biases; switch to LeakyReLU/ELU/GELU; normalize the inputs.

    Thresholds:
        min_active_rate: a unit active on fewer samples than this fraction is dead.
        max_dead_fraction: report a layer when more than this fraction of its units is dead.
            While the loss still moves, the finding is a note (info): the units left alive
            are enough to train.
    """

    id = "dead-relu"
    area = "activations"
    intervention = "reinit-kernels"
    summary = "ReLU layers whose units output zero for every sample"
    describes_state = True
    thresholds = (
        Threshold("min_active_rate", 0.01, "a unit active on fewer samples than this is dead"),
        Threshold("max_dead_fraction", 0.5, "fraction of dead units per layer"),
    )
    # A fully dead stack makes the output a constant (its bias), zero at initialization.
    explains = ("vanishing-gradient", "disconnected-gradient", "zero-norm-target", "vanishing-activation")

    def check(self, facts: Facts) -> list[Finding]:
        layers = [lf for lf in facts.layers if lf.family == RELU_FAMILY and lf.unit_active_rate is not None]
        if not layers:
            raise Skip("no ReLU-family layers with measured outputs")
        moving = facts.loss_moving
        starved = _fed_a_vanished_signal(facts)
        out = []
        for lf in layers:
            if lf.name in starved:
                continue  # zero in, zero out: vanishing-activation reports the layer where it died
            if lf.params and not lf.trainable_params:
                continue  # frozen: its units did not die in training; if its output vanished, that is reported
            rate = np.asarray(lf.unit_active_rate)
            if rate.size == 0:
                continue
            dead = float(np.mean(rate < self.t["min_active_rate"]))
            if dead <= self.t["max_dead_fraction"]:
                continue
            out.append(self.finding(
                f"{fmt(dead * 100)}% of {rate.size} units in layer {lf.name!r} are dead "
                f"(active on < {fmt(self.t['min_active_rate'] * 100)}% of samples) > "
                f"{fmt(self.t['max_dead_fraction'] * 100)}%" + moving_note(facts),
                confidence=(0.55 + 0.4 * ramp(dead, self.t["max_dead_fraction"], 1.0)) * (0.5 if moving else 1),
                severity=Severity.INFO if moving else None,
                layer=lf.name,
                evidence={"dead_fraction": dead, "units": int(rate.size),
                          "threshold": self.t["max_dead_fraction"]},
            ))
        return out


def _input_scale(facts: Facts) -> float | None:
    """RMS of the float inputs (ids excluded): what a layer's output is compared with."""
    inputs = [a for a in facts.inputs if not used_as_indices(a, facts) and a.features]
    if not inputs:
        return None
    scale = max(float(np.sqrt(np.nanmean(a.feature_rms**2))) for a in inputs)
    return scale if np.isfinite(scale) and scale > 0 else None


def _fed_a_vanished_signal(facts: Facts) -> set[str]:
    """Layers after the first one whose output vanished (vanishing-activation's rule): their
    zero outputs are that layer's doing, not their own (a ReLU fed zeros is "dead" too)."""
    scale = _input_scale(facts)
    if scale is None:
        return set()
    limit = VanishingActivation.thresholds[0].default * scale
    measured = [lf for lf in facts.layers if lf.output_mean.size and lf.output_std.size]
    for i, lf in enumerate(measured):
        if float(np.median(lf.output_rms)) < limit:
            return {later.name for later in measured[i + 1:]}
    return set()


class VanishingActivation(Detector):
    """
    What it detects:
        A layer whose outputs are ~0 although the model's inputs are not: its output RMS
        sqrt(mean^2 + std^2) (median over the probe's steps) is below ``max_ratio`` of the
        inputs' RMS. The first such layer is reported; everything after it sees nothing.

    Why it stalls training:
        A kernel's gradient is proportional to the input it multiplies. When the forward
        signal dies in one layer, every trainable layer after it gets ~zero gradient, and
        the layers before it get no useful error signal either. The classic case is
        transfer learning with a frozen base whose weights were never loaded
        (``weights=None``) or whose BatchNormalization statistics are untrained.

    How to fix:
        If the layer is a frozen pretrained base, load its weights and feed it the
        preprocessing it expects (keras.applications.<model>.preprocess_input); otherwise
        check its initialization (He/Glorot rather than zeros or tiny scales), dead ReLUs
        and BatchNormalization statistics.

    Thresholds:
        max_ratio: output RMS / input RMS below which a layer's signal has vanished.
    """

    id = "vanishing-activation"
    area = "activations"
    summary = "a layer whose outputs are ~0: the forward signal dies there"
    thresholds = (Threshold("max_ratio", 1e-4, "layer output RMS / input RMS"),)
    explains = ("vanishing-gradient", "disconnected-gradient", "zero-norm-target")

    def check(self, facts: Facts) -> list[Finding]:
        scale = _input_scale(facts)
        if scale is None:
            raise Skip("no float inputs with a finite, non-zero scale to compare layer outputs with")
        measured = [lf for lf in facts.layers if lf.output_mean.size and lf.output_std.size]
        if not measured:
            raise Skip("no layer outputs measured")
        for lf in measured:
            rms = float(np.median(lf.output_rms))
            ratio = rms / scale
            if ratio < self.t["max_ratio"]:
                return [self.finding(
                    f"layer {lf.name!r} ({lf.class_name}) outputs RMS {fmt(rms)}, {fmt(ratio)} of the inputs' "
                    f"RMS {fmt(scale)} < {fmt(self.t['max_ratio'])}: the forward signal vanishes there",
                    confidence=0.6 + 0.35 * ramp(-np.log10(max(ratio, 1e-30) / self.t["max_ratio"]), 0, 4),
                    layer=lf.name,
                    evidence={"output_rms": rms, "input_rms": scale, "ratio": ratio, "threshold": self.t["max_ratio"]},
                )]
        return []


class ExplodingActivation(Detector):
    """
    What it detects:
        A forward signal that grows by orders of magnitude through the layers before any
        update: the first layer whose output RMS sqrt(mean^2 + std^2), measured at the
        probe's first step (the initial weights), is more than ``max_growth`` times the RMS
        of the input to the first layer with weights, and more than ``min_output_rms`` in
        absolute terms. The counterpart of vanishing-activation.

    Why it stalls training:
        A layer whose weights are too large for its fan-in multiplies the signal's scale by
        about sqrt(fan_in) x the weights' std; a few such layers push pre-activations into
        the thousands. Sigmoid/tanh units behind them saturate, the gradients grow with the
        activations, and one step at any usual learning rate can turn the loss NaN.

    How to fix:
        Use a variance-preserving initializer (glorot_uniform, the Keras default, or
        he_normal before ReLU) instead of a large fixed scale (RandomNormal(stddev=1), ones,
        a large Constant); add BatchNormalization or LayerNormalization between layers.

    Thresholds:
        max_growth: output RMS / the RMS of the first weighted layer's input. Glorot/He
            initializers keep each layer's output within a factor ~2 of its input (He et
            al. 2015); N(0, 1) weights multiply it by sqrt(fan_in), 16 for 256 inputs, so
            three such layers grow it ~4e3 times. 1e3 is three orders of magnitude.
        min_output_rms: the output RMS must also exceed this, two orders above the unit
            scale initializers aim for: growth from tiny inputs up to unit scale (a
            normalization layer after inputs of RMS 1e-4) is harmless.
    """

    id = "exploding-activation"
    area = "activations"
    intervention = "reinit-kernels"
    summary = "the forward signal grows by orders of magnitude through the layers at initialization"
    thresholds = (
        Threshold("max_growth", 1e3, "layer output RMS / RMS of the first weighted layer's input"),
        Threshold("min_output_rms", 1e2, "layer output RMS (absolute) for the growth rule"),
    )
    explains = ("exploding-gradient", "saturated-activation", "learning-rate-too-high", "large-output-norm")

    def check(self, facts: Facts) -> list[Finding]:
        scale, reference = input_scale(facts)
        weighted = [lf.index for lf in facts.layers if lf.params > 0]
        start = min(weighted) if weighted else 0
        measured = [lf for lf in facts.layers if lf.index >= start and lf.output_mean.size and lf.output_std.size]
        if not measured:
            raise Skip("no layer outputs measured")
        # The first step's forward pass runs before any update: the initial weights' signal.
        # NaN outputs come from NaN data (non-finite-data), not from growth; +inf from overflow.
        initial = [(lf, float(lf.output_rms[0])) for lf in measured]
        growth = [(lf, rms, rms / scale) for lf, rms in initial if not math.isnan(rms)]
        exploded = [(lf, rms, g) for lf, rms, g in growth
                    if g > self.t["max_growth"] and rms > self.t["min_output_rms"]]
        if not exploded:
            return []
        lf, rms, ratio = exploded[0]
        peak_lf, peak_rms, peak = max(growth, key=lambda item: item[2])
        non_finite = not math.isfinite(facts.progress)
        moving = facts.loss_moving
        severity = Severity.INFO if moving else Severity.ERROR if non_finite else None
        peak_text = (f"; it peaks at {fmt(peak_rms)} ({fmt(peak)}x) in layer {peak_lf.name!r}"
                     if peak_lf is not lf else "")
        note = "; the loss became non-finite" if non_finite else moving_note(facts)
        return [self.finding(
            f"at initialization layer {lf.name!r} ({lf.class_name}) outputs RMS {fmt(rms)}, {fmt(ratio)}x the "
            f"RMS {fmt(scale)} of {reference} > {fmt(self.t['max_growth'])}x: the forward signal explodes "
            f"there{peak_text}{note}",
            confidence=(0.6 + 0.35 * ramp(math.log10(min(ratio, 1e30) / self.t["max_growth"]), 0, 3))
            * (0.5 if moving else 1),
            severity=severity, layer=lf.name,
            evidence={"output_rms": rms, "input_rms": scale, "growth": ratio if math.isfinite(ratio) else None,
                      "peak_growth": peak if math.isfinite(peak) else None, "peak_layer": peak_lf.name,
                      "threshold": self.t["max_growth"]},
        )]


def input_scale(facts: Facts) -> tuple[float, str]:
    """(RMS, what it is) of the signal entering the network: the first weighted layer's input
    when measured, else the float inputs' RMS. Skip when neither is usable."""
    seen = facts.first_weighted_input_rms
    if seen is not None and math.isfinite(seen) and seen > 0:
        return float(seen), "the first weighted layer's input"
    inputs = [a for a in facts.inputs if not used_as_indices(a, facts) and a.features]
    if not inputs:
        raise Skip("no float inputs to compare layer outputs with")
    scale = max(float(np.sqrt(np.nanmean(a.feature_rms**2))) for a in inputs)
    if not math.isfinite(scale) or scale <= 0:
        raise Skip("the inputs are all zero or not finite")
    return scale, "the inputs"


DETECTORS = (SaturatedActivation, DeadRelu, VanishingActivation, ExplodingActivation)
