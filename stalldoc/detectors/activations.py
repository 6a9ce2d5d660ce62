"""Detectors on forward activations: units that no longer pass a gradient back."""

from __future__ import annotations

import numpy as np

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt, ramp
from stalldoc.facts import RELU_FAMILY, SATURATING, Facts
from stalldoc.findings import Finding
from stalldoc.trajectory import is_moving


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
            is saturated (median over the probe's steps).
    """

    id = "saturated-activation"
    area = "activations"
    summary = "sigmoid/tanh/softmax layers stuck in their flat tails"
    thresholds = (
        Threshold("max_saturated_fraction", 0.5, "fraction of saturated outputs per layer"),
    )
    # A fully saturated float32 sigmoid returns exactly 0 or 1: its gradient is exactly zero.
    explains = ("vanishing-gradient", "disconnected-gradient")
    causal_rank = 30

    def check(self, facts: Facts) -> list[Finding]:
        layers = [lf for lf in facts.layers if lf.family == SATURATING and lf.saturated_fraction is not None]
        if not layers:
            raise Skip("no sigmoid/tanh/softmax layers with measured outputs")
        last_index = max(lf.index for lf in facts.layers)
        moving = is_moving(facts)
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
                f"> {fmt(self.t['max_saturated_fraction'] * 100)}% (mean derivative {fmt(gain * 100)}% of peak)",
                confidence=0.55 + 0.4 * ramp(fraction, self.t["max_saturated_fraction"], 1.0),
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
    """

    id = "dead-relu"
    area = "activations"
    summary = "ReLU layers whose units output zero for every sample"
    thresholds = (
        Threshold("min_active_rate", 0.01, "a unit active on fewer samples than this is dead"),
        Threshold("max_dead_fraction", 0.5, "fraction of dead units per layer"),
    )
    # A fully dead stack makes the output a constant (its bias), zero at initialization.
    explains = ("vanishing-gradient", "disconnected-gradient", "zero-norm-target")
    causal_rank = 31

    def check(self, facts: Facts) -> list[Finding]:
        layers = [lf for lf in facts.layers if lf.family == RELU_FAMILY and lf.unit_active_rate is not None]
        if not layers:
            raise Skip("no ReLU-family layers with measured outputs")
        out = []
        for lf in layers:
            rate = np.asarray(lf.unit_active_rate)
            if rate.size == 0:
                continue
            dead = float(np.mean(rate < self.t["min_active_rate"]))
            if dead <= self.t["max_dead_fraction"]:
                continue
            out.append(self.finding(
                f"{fmt(dead * 100)}% of {rate.size} units in layer {lf.name!r} are dead "
                f"(active on < {fmt(self.t['min_active_rate'] * 100)}% of samples) > "
                f"{fmt(self.t['max_dead_fraction'] * 100)}%",
                confidence=0.55 + 0.4 * ramp(dead, self.t["max_dead_fraction"], 1.0),
                layer=lf.name,
                evidence={"dead_fraction": dead, "units": int(rate.size),
                          "threshold": self.t["max_dead_fraction"]},
            ))
        return out


DETECTORS = (SaturatedActivation, DeadRelu)
