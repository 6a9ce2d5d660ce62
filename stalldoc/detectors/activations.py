"""Detectors on the forward signal: units that no longer pass a gradient back, and a signal
that vanishes or explodes on its way through the layers."""

from __future__ import annotations

import math

import numpy as np

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt, ramp, used_as_indices
from stalldoc.facts import INDEX_LAYERS, RELU_FAMILY, SATURATING, Facts, RecurrentFacts
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
        distribution (one class takes almost all the mass). The gates of LSTM and GRU
        layers too (input, forget, output gates and the cell candidate; update, reset gates
        and the candidate), recomputed at every time step from the layer's input sequence
        and weights: the finding names the most saturated gate (``lstm/forget_gate``) and
        gives each gate's mean (a forget gate stuck near 0 forgets at every step; a GRU
        update gate stuck near 1 never lets its state change).

    Why it stalls training:
        Backpropagation multiplies the gradient by that local derivative: a saturated unit
        passes almost nothing back, so the layers before it stop learning.

    How to fix:
        Normalize the inputs; use a variance-preserving initializer (glorot for
        sigmoid/tanh); add BatchNormalization before the activation; or switch hidden
        layers to ReLU/GELU. Lower the learning rate if saturation appears after a few steps.
        Recurrent gates: see the finding's fix (input scaling, the gate biases, clipping).

    Thresholds:
        max_saturated_fraction: report a layer (or a recurrent layer's gate) when more than
            this fraction of its outputs is saturated (median over the probe's steps). While
            the loss still moves, a saturated hidden layer is a note (info) and the output
            layer is not reported: a confident output is what training produces.
    """

    id = "saturated-activation"
    area = "activations"
    intervention = "hidden-activations"
    summary = "sigmoid/tanh/softmax layers stuck in their flat tails"
    describes_state = True
    thresholds = (
        Threshold("max_saturated_fraction", 0.5, "fraction of saturated outputs per layer"),
    )
    # A fully saturated float32 sigmoid returns exactly 0 or 1: its gradient is exactly zero;
    # a gradient shrunk by saturation makes every update tiny, whatever the learning rate.
    explains = ("vanishing-gradient", "disconnected-gradient", "learning-rate-too-low")

    def check(self, facts: Facts) -> list[Finding]:
        layers = [lf for lf in facts.layers if lf.family == SATURATING and lf.saturated_fraction is not None]
        gated = [rf for rf in facts.recurrent if any(_measured(g.saturated_fraction) for g in rf.gates)]
        if not layers and not gated:
            raise Skip("no sigmoid/tanh/softmax layers or recurrent gates with measured outputs")
        out = self._layers(facts, layers)
        for rf in gated:
            out.extend(self._gates(facts, rf))
        return out

    def _layers(self, facts: Facts, layers) -> list[Finding]:
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

    def _gates(self, facts: Facts, rf: RecurrentFacts) -> list[Finding]:
        """One finding per recurrent layer whose gates saturate, named after the worst gate."""
        limit = self.t["max_saturated_fraction"]
        stats = {g.name: (float(np.median(g.saturated_fraction)), float(np.median(g.mean)),
                          float(np.median(g.mean_gain)), g) for g in rf.gates if _measured(g.saturated_fraction)}
        saturated = [(name, s) for name, s in stats.items() if s[0] > limit]
        if not saturated:
            return []
        name, (fraction, _, gain, worst) = max(saturated, key=lambda item: item[1][0])
        moving = facts.loss_moving
        listed = ", ".join(f"{n} {fmt(f * 100)}% (mean {fmt(m)})" for n, (f, m, _, _) in saturated)
        stuck = [(n, m) for n, (_, m, _, _) in stats.items() if n in MEMORY_GATES and (m < 0.05 or m > 0.95)]
        stuck_text = "".join(f"; its {n} is stuck near {int(m > 0.5)} (mean {fmt(m)}): {MEMORY_GATES[n][m > 0.5]}"
                             for n, m in stuck)
        return [self.finding(
            f"{rf.kind} layer {rf.layer!r}: gates saturated on more than {fmt(limit * 100)}% of their values over "
            f"{rf.timesteps} time steps: {listed}; the most saturated passes {fmt(gain * 100)}% of its peak "
            f"derivative{stuck_text}" + moving_note(facts),
            confidence=(0.55 + 0.4 * ramp(fraction, limit, 1.0)) * (0.5 if moving else 1),
            severity=Severity.INFO if moving else None,
            layer=f"{rf.layer}/{name}",
            fix=gate_fix(rf, [(n, s[1]) for n, s in saturated]),
            evidence={"saturated_fraction": fraction, "mean_gain": gain, "threshold": limit,
                      "activation": worst.activation, "gate": name, "recurrent_layer": rf.layer,
                      "gates": {n: {"saturated_fraction": f, "mean": m, "mean_gain": g}
                                for n, (f, m, g, _) in stats.items()},
                      "recurrent_norms": rf.recurrent_norms},
        )]


# Gates that decide what the state keeps, and what each does when stuck near (0, 1).
MEMORY_GATES = {
    "forget_gate": ("the cell state is wiped at every step (no memory)",
                    "the cell state keeps everything and only grows"),
    "update_gate": ("the state is replaced at every step (no memory)",
                    "the state never changes from its initial value"),
}
# Keras' default bias of each gate (unit_forget_bias=True gives the forget gate +1).
DEFAULT_GATE_BIAS = {"forget_gate": "+1 (unit_forget_bias=True)"}


def _measured(values) -> bool:
    return values is not None and np.asarray(values).size > 0 and bool(np.all(np.isfinite(values)))


def gate_fix(rf: RecurrentFacts, saturated: list[tuple[str, float]]) -> str:
    """What to change for the saturated gates of a recurrent layer. A gate pinned at one end
    (mean near 0 or 1) is pushed there by its bias; one saturated at both ends (mean near the
    middle) by pre-activations too large for its inputs' scale or its kernel."""
    sigmoid = [(n, m) for n, m in saturated if n not in ("cell_candidate", "candidate", "cell_output", "state")]
    pinned = [n for n, m in sigmoid if m < 0.05 or m > 0.95]
    spread = [n for n, _ in saturated if n not in pinned]
    parts = []
    if pinned:
        defaults = ", ".join(f"{DEFAULT_GATE_BIAS.get(n, '0')} for the {n}" for n in pinned)
        parts.append(f"set the bias of the {', '.join(pinned)} in layer {rf.layer!r} back to Keras' default "
                     f"({defaults}) instead of a large constant")
    if spread:
        parts.append(f"scale the sequence fed to {rf.layer!r} to unit variance (a Normalization layer before it) and "
                     "keep Keras' initializers (glorot_uniform kernel, orthogonal recurrent_kernel) instead of larger "
                     f"ones, so the {', '.join(spread)} pre-activations stay in the sigmoid/tanh's slope")
    parts.append("if the gates saturate only after some steps, lower the learning rate and clip gradients "
                 "(clipnorm=1.0)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


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
    """RMS of the float inputs (ids excluded): what a layer's output is compared with. With
    several inputs, the smallest: which input feeds which layer is not measured, and a layer
    fed by a small input must not look vanished beside a large one."""
    inputs = [a for a in facts.inputs if not used_as_indices(a, facts) and a.features]
    if not inputs:
        return None
    scales = [float(np.sqrt(np.nanmean(a.feature_rms**2))) for a in inputs]
    scales = [v for v in scales if np.isfinite(v) and v > 0]
    return min(scales) if scales else None


def _signal_layers(facts: Facts) -> list:
    """Layers whose output carries the inputs' signal: measured, and not an index lookup (an
    Embedding's output scale is its table's, whatever the ids)."""
    return [lf for lf in facts.layers if lf.output_mean.size and lf.output_std.size
            and lf.class_name not in INDEX_LAYERS]


def _fed_a_vanished_signal(facts: Facts) -> set[str]:
    """Layers after the first one whose output vanished (vanishing-activation's rule): their
    zero outputs are that layer's doing, not their own (a ReLU fed zeros is "dead" too)."""
    scale = _input_scale(facts)
    if scale is None:
        return set()
    limit = VanishingActivation.thresholds[0].default * scale
    measured = _signal_layers(facts)
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
        if not math.isfinite(facts.raw_progress):
            raise Skip("the loss became non-finite: zero outputs then follow from the blow-up")
        measured = _signal_layers(facts)
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

        A recurrent layer (LSTM, GRU, SimpleRNN) is also followed through time: its carried
        state (the LSTM's cell state, else the hidden state), recomputed from the layer's
        input sequence at the first step, exploding when its peak RMS over the sequence is
        more than ``max_growth`` times its RMS after the first time step and more than
        ``min_output_rms``. Each step multiplies the state by the recurrent kernel, so a
        kernel whose largest singular value exceeds 1 under an unbounded activation (a ReLU
        SimpleRNN) grows it geometrically; LSTM and GRU states grow at most linearly.

    How to fix:
        Use a variance-preserving initializer (glorot_uniform, the Keras default, or
        he_normal before ReLU) instead of a large fixed scale (RandomNormal(stddev=1), ones,
        a large Constant); add BatchNormalization or LayerNormalization between layers.
        Recurrent layers: keep the orthogonal recurrent_initializer (Keras' default; its
        singular values are 1), use tanh rather than ReLU, or an LSTM/GRU.

    Thresholds:
        max_growth: output RMS / the RMS of the first weighted layer's input. Glorot/He
            initializers keep each layer's output within a factor ~2 of its input (He et
            al. 2015); N(0, 1) weights multiply it by sqrt(fan_in), 16 for 256 inputs, so
            three such layers grow it ~4e3 times. 1e3 is three orders of magnitude.
        min_output_rms: the output RMS must also exceed this, two orders above the unit
            scale initializers aim for: growth from tiny inputs up to unit scale (a
            normalization layer after inputs of RMS 1e-4) is harmless.
            The same two thresholds apply to a recurrent state's growth over the time steps.
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
        recurrent = self._recurrent(facts)
        try:
            layered = self._layers(facts)
        except Skip:
            if not facts.recurrent:
                raise
            layered = []
        # The explosion furthest upstream; a recurrent one names its cause more precisely.
        found = sorted([*recurrent, *layered], key=lambda item: (item[0], item[1]))
        return [found[0][2]] if found else []

    def _recurrent(self, facts: Facts) -> list[tuple[int, int, Finding]]:
        out = []
        for rf in facts.recurrent:
            if not rf.state_rms_first.size:
                continue
            first, peak, growth = (float(rf.state_rms_first[0]), float(rf.state_rms_peak[0]),
                                   float(rf.time_growth[0]))
            if math.isnan(growth) or not (growth > self.t["max_growth"] and peak > self.t["min_output_rms"]):
                continue
            non_finite = not math.isfinite(facts.progress)
            moving = facts.loss_moving
            norm = max(rf.recurrent_norms.values(), default=float("nan"))
            norm_text = (f"; its recurrent kernel's largest singular value is {fmt(norm)}"
                         + (" (> 1: each step stretches the state)" if norm > 1 else "")) if math.isfinite(norm) else ""
            note = "; the loss became non-finite" if non_finite else moving_note(facts)
            out.append((rf.index, 0, self.finding(
                f"at initialization the state of {rf.kind} layer {rf.layer!r} grows {fmt(growth)}x over its "
                f"{rf.timesteps} time steps (RMS {fmt(first)} after the first, peak {fmt(peak)}) > "
                f"{fmt(self.t['max_growth'])}x: the recurrent forward pass explodes{norm_text}{note}",
                confidence=(0.6 + 0.35 * ramp(math.log10(min(growth, 1e30) / self.t["max_growth"]), 0, 3))
                * (0.5 if moving else 1),
                severity=Severity.INFO if moving else Severity.ERROR if non_finite else None,
                layer=rf.layer,
                fix=(f"Keep {rf.layer!r}'s recurrent kernel at spectral norm <= 1 (Keras' default orthogonal "
                     "recurrent_initializer) instead of a larger scale; use tanh rather than an unbounded "
                     "activation, or an LSTM/GRU; clip gradients (clipnorm=1.0) while it trains."),
                evidence={"state_rms_first": first, "state_rms_peak": peak,
                          "growth": growth if math.isfinite(growth) else None, "timesteps": rf.timesteps,
                          "recurrent_norms": rf.recurrent_norms, "threshold": self.t["max_growth"]},
            )))
        return out

    def _layers(self, facts: Facts) -> list[tuple[int, int, Finding]]:
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
        return [(lf.index, 1, self.finding(
            f"at initialization layer {lf.name!r} ({lf.class_name}) outputs RMS {fmt(rms)}, {fmt(ratio)}x the "
            f"RMS {fmt(scale)} of {reference} > {fmt(self.t['max_growth'])}x: the forward signal explodes "
            f"there{peak_text}{note}",
            confidence=(0.6 + 0.35 * ramp(math.log10(min(ratio, 1e30) / self.t["max_growth"]), 0, 3))
            * (0.5 if moving else 1),
            severity=severity, layer=lf.name,
            evidence={"output_rms": rms, "input_rms": scale, "growth": ratio if math.isfinite(ratio) else None,
                      "peak_growth": peak if math.isfinite(peak) else None, "peak_layer": peak_lf.name,
                      "threshold": self.t["max_growth"]},
        ))]


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
