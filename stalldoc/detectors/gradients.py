"""Detectors on gradients and the weights they update: how much of the loss's signal reaches
each weight, and whether the weights can tell their units apart."""

from __future__ import annotations

import math

import numpy as np

from stalldoc.detectors.base import Detector, Skip, Threshold, fmt, ramp
from stalldoc.facts import Facts, VariableFacts
from stalldoc.findings import Finding, Severity

# A kernel gradient RMS below this has vanished: SageMaker Debugger's vanishing-gradient rule
# (mean |gradient| < 1e-7). vanishing-gradient reports it; learning-rate-too-low defers to it.
VANISHED_GRAD_RMS = 1e-7


def grad_rms(v: VariableFacts) -> float:
    """Median over steps of the gradient's root-mean-square (norm / sqrt(size))."""
    return float(np.median(v.grad_norm)) / math.sqrt(max(1, v.size))


def kernels_in_order(facts: Facts) -> list[VariableFacts]:
    """Connected kernels with finite gradients, from the input side to the output side."""
    ks = [v for v in facts.connected_variables() if v.is_kernel and np.all(np.isfinite(v.grad_norm))]
    return sorted(ks, key=lambda v: v.layer_index)


class NoTrainableWeights(Detector):
    """
    What it detects:
        A model with no trainable weights at all (every layer frozen, trainable=False).

    Why it stalls training:
        The optimizer has nothing to update: the loss cannot change.

    How to fix:
        Unfreeze the layers meant to learn (layer.trainable = True) and compile again;
        when fine-tuning, freeze the base model but keep a trainable head.

    Thresholds:
        (none)
    """

    id = "no-trainable-weights"
    area = "gradients"
    intervention = "unfreeze"
    summary = "the model has no trainable weights"
    severity = Severity.ERROR
    explains = ("disconnected-gradient", "converged", "learning-rate-too-low")

    def check(self, facts: Facts) -> list[Finding]:
        if facts.model.trainable_params > 0:
            return []
        return [self.finding(
            f"the model has 0 trainable parameters ({facts.model.non_trainable_params} frozen)",
            confidence=1.0,
            evidence={"trainable_params": 0, "non_trainable_params": facts.model.non_trainable_params},
        )]


class DisconnectedGradient(Detector):
    """
    What it detects:
        Trainable variables whose gradient is None (not connected to the loss) or exactly
        zero at every probe step.

    Why it stalls training:
        Those weights never change. If they are all of the model's weights, nothing
        learns; if some are, part of the network is dead weight — often a layer built but
        not used in call(), a stop_gradient, an integer cast, or an argmax on the path.

    How to fix:
        Check that every layer is on the path from the inputs to the loss; remove
        tf.stop_gradient / casts to int / argmax / round from that path; make sure the loss
        uses the model's output rather than a constant.

    Thresholds:
        zero_norm: a gradient with norm at or below this at every step counts as zero.
    """

    id = "disconnected-gradient"
    area = "gradients"
    summary = "trainable variables that receive no gradient"
    thresholds = (Threshold("zero_norm", 0.0, "gradient norm counted as exactly zero"),)

    def check(self, facts: Facts) -> list[Finding]:
        if not facts.variables:
            raise Skip("no trainable variables")
        dead = [v for v in facts.variables
                if v.grad_is_none or bool(np.all(np.abs(v.grad_norm) <= self.t["zero_norm"]))]
        if not dead:
            return []
        share = sum(v.size for v in dead) / max(1, sum(v.size for v in facts.variables))
        names = ", ".join(v.path for v in dead[:5]) + (" ..." if len(dead) > 5 else "")
        none_count = sum(v.grad_is_none for v in dead)
        everything = len(dead) == len(facts.variables)
        return [self.finding(
            f"{len(dead)} of {len(facts.variables)} trainable variables get no gradient "
            f"({none_count} None, {len(dead) - none_count} zero; {fmt(share * 100)}% of parameters): {names}",
            confidence=0.9 if everything else 0.7,
            layer=dead[0].layer,
            severity=Severity.ERROR if everything else None,
            evidence={"variables": [v.path for v in dead], "parameter_fraction": share,
                      "none": none_count, "threshold": self.t["zero_norm"]},
        )]


class VanishingGradient(Detector):
    """
    What it detects:
        Gradients too small to move the weights: a kernel whose gradient RMS is below
        ``min_grad_rms``, or gradients that shrink by more than ``max_depth_ratio`` from
        the last layer with weights back to the first one, while the first is also small.

    Why it stalls training:
        The update a weight gets is proportional to its gradient. When the signal fades
        on its way back through many layers (sigmoid/tanh derivatives are at most 0.25/1,
        multiplied layer after layer), the early layers receive almost nothing and stop
        learning, and the loss plateaus.

    How to fix:
        Use ReLU/GELU hidden activations instead of sigmoid/tanh; He or Glorot
        initialization; BatchNormalization or LayerNormalization between layers; residual
        connections for deep stacks; normalize the inputs.

    Thresholds:
        min_grad_rms: a kernel gradient RMS below this has vanished (SageMaker Debugger's
            mean |gradient| < 1e-7 rule).
        max_depth_ratio: first-layer / last-layer gradient RMS below this is a vanishing
            profile (AUTOTRAINER uses 1e-3 on gradient norms).
        max_first_rms: ...when the first layer's gradient RMS is also below this.
    """

    id = "vanishing-gradient"
    area = "gradients"
    intervention = "hidden-activations"
    summary = "gradients that fade to nothing on their way to the first layers"
    thresholds = (
        Threshold("min_grad_rms", VANISHED_GRAD_RMS, "kernel gradient RMS below which it has vanished"),
        Threshold("max_depth_ratio", 1e-3, "first/last layer gradient RMS ratio"),
        Threshold("max_first_rms", 1e-4, "first-layer gradient RMS for the ratio rule"),
    )

    def check(self, facts: Facts) -> list[Finding]:
        kernels = kernels_in_order(facts)
        if not kernels:
            raise Skip("no connected kernels with finite gradients")
        rms = [grad_rms(k) for k in kernels]
        first, last = rms[0], rms[-1]
        smallest = min(rms)
        weakest = kernels[rms.index(smallest)]
        ratio = first / last if last > 0 else float("inf")
        evidence = {"first_layer_grad_rms": first, "last_layer_grad_rms": last,
                    "depth_ratio": ratio if math.isfinite(ratio) else None,
                    "smallest_grad_rms": smallest, "smallest_at": weakest.path,
                    "threshold": self.t["min_grad_rms"]}
        if smallest < self.t["min_grad_rms"]:
            depth = math.log10(self.t["min_grad_rms"] / max(smallest, 1e-30))
            return [self.finding(
                f"gradient RMS of {weakest.path} is {fmt(smallest)} < {fmt(self.t['min_grad_rms'])} "
                f"(first layer {fmt(first)}, last layer {fmt(last)})",
                confidence=0.65 + 0.3 * ramp(depth, 0, 3), layer=weakest.layer, evidence=evidence)]
        if len(kernels) >= 2 and ratio < self.t["max_depth_ratio"] and first < self.t["max_first_rms"]:
            evidence["threshold"] = self.t["max_depth_ratio"]
            depth = math.log10(self.t["max_depth_ratio"] / max(ratio, 1e-30))
            return [self.finding(
                f"gradient RMS falls from {fmt(last)} at the last layer to {fmt(first)} at the first "
                f"(ratio {fmt(ratio)} < {fmt(self.t['max_depth_ratio'])})",
                confidence=0.6 + 0.3 * ramp(depth, 0, 3), layer=kernels[0].layer, evidence=evidence)]
        return []


class ExplodingGradient(Detector):
    """
    What it detects:
        Gradients that are non-finite, very large, or growing fast over the probe's steps.

    Why it stalls training:
        Huge steps throw the weights far from where the loss was falling; the loss jumps
        or becomes NaN, and saturating units get pinned to their tails for good.

    How to fix:
        Lower the learning rate; clip gradients (optimizer clipnorm=1.0); normalize the
        inputs; add normalization layers; check the loss for divisions by small numbers.

    Thresholds:
        max_grad_norm: global gradient norm above this is exploding.
        max_growth: ratio of the last to the first step's global gradient norm.
        min_growth_norm: ...when the last step's global norm is also above this: a model at
            its optimum starts from a ~0 gradient (measured 7e-8 growing to 3e-4 on the
            converged sample; healthy models run at 0.6-0.9), which is not an explosion.
    """

    id = "exploding-gradient"
    area = "gradients"
    summary = "gradients that are huge, growing, or NaN"
    thresholds = (
        Threshold("max_grad_norm", 1e3, "global gradient norm considered exploding"),
        Threshold("max_growth", 1e2, "last/first step global gradient norm ratio"),
        Threshold("min_growth_norm", 1e-2, "last step's global gradient norm for the growth rule"),
    )
    explains = ("saturated-activation",)

    def check(self, facts: Facts) -> list[Finding]:
        connected = facts.connected_variables()
        if not connected:
            raise Skip("no connected variables")
        norms = np.stack([v.grad_norm for v in connected])  # (variables, steps)
        if not np.all(np.isfinite(norms)):
            bad = [v.path for v in connected if not np.all(np.isfinite(v.grad_norm))]
            first_step = int(np.argmax(~np.all(np.isfinite(norms), axis=0)))
            return [self.finding(
                f"gradients became non-finite (NaN/Inf) at step {first_step + 1} in {len(bad)} variables",
                confidence=0.9, severity=Severity.ERROR, layer=connected[0].layer,
                evidence={"first_non_finite_step": first_step + 1, "variables": bad[:10],
                          "threshold": self.t["max_grad_norm"]})]
        global_norm = np.sqrt(np.sum(norms**2, axis=0))
        peak = float(global_norm.max())
        growth = float(global_norm[-1] / global_norm[0]) if global_norm[0] > 0 else 1.0
        evidence = {"max_global_grad_norm": peak, "growth": growth, "threshold": self.t["max_grad_norm"]}
        if peak > self.t["max_grad_norm"]:
            return [self.finding(
                f"global gradient norm reaches {fmt(peak)} > {fmt(self.t['max_grad_norm'])}",
                confidence=0.6 + 0.35 * ramp(math.log10(peak / self.t["max_grad_norm"]), 0, 3),
                evidence=evidence)]
        if growth > self.t["max_growth"] and global_norm[-1] > self.t["min_growth_norm"]:
            evidence["threshold"] = self.t["max_growth"]
            return [self.finding(
                f"global gradient norm grew {fmt(growth)}x over {facts.steps} steps > {fmt(self.t['max_growth'])}x",
                confidence=0.6, evidence=evidence)]
        return []


class SymmetricInit(Detector):
    """
    What it detects:
        A hidden layer (any layer with weights before the output layer) with more than one
        unit whose kernel gives every unit the same incoming weights at the start — an
        all-zero, all-ones or other constant initializer. Measured as the kernel's unit
        spread before the first step: the RMS over units of (the unit's weights - the mean
        unit's weights) / the kernel's RMS; 0 = identical units, ~1 for a random
        initializer. When the probe measured the spread again after its steps, the units
        must still be identical then.

    Why it stalls training:
        Identical units compute identical outputs and, when the layers after them treat
        them alike (constant kernels there too), receive identical gradients and identical
        updates: they stay copies of one another, and the layer has the capacity of a
        single unit. Initialization must break the symmetry (Goodfellow, Bengio and
        Courville, Deep Learning, 2016, section 8.4). An all-zero kernel before a ReLU is
        worse: it outputs zeros with a zero gradient, so nothing before or in it learns.

    How to fix:
        Use a random initializer for kernels: glorot_uniform (the Keras default) or
        he_normal before ReLU. Keep zeros or constants for biases only.

    Thresholds:
        max_unit_spread: a kernel whose unit spread is below this has identical units, at
            the start and (when measured) after the probe's steps. A random initializer
            gives ~1; float32 rounding of identical columns leaves < 1e-7; one Adam step at
            lr 1e-3 on a unit-scale kernel moves units apart by ~1e-3. 1e-5 sits between
            rounding and any real update.
    """

    id = "symmetric-init"
    area = "gradients"
    intervention = "reinit-kernels"
    summary = "hidden units with identical initial weights: they get identical updates and stay copies"
    severity = Severity.ERROR
    thresholds = (Threshold("max_unit_spread", 1e-5, "kernel unit spread counted as identical units"),)
    explains = ("dead-relu", "vanishing-activation", "vanishing-gradient", "disconnected-gradient",
                "zero-norm-target", "learning-rate-too-high")

    def check(self, facts: Facts) -> list[Finding]:
        kernels = [v for v in facts.variables if v.is_kernel]
        if not kernels:
            raise Skip("no kernels")
        measured = [v for v in kernels if v.initial_unit_spread is not None]
        if not measured:
            raise Skip("the kernels' initial weights were not measured (unit spread unknown)")
        output_index = max(v.layer_index for v in kernels)
        limit = self.t["max_unit_spread"]
        symmetric = [v for v in measured if v.layer_index < output_index and v.shape[-1] > 1
                     and v.initial_unit_spread <= limit]
        # Units whose spread grew past the limit during the probe broke their symmetry.
        stuck = [v for v in symmetric if v.final_unit_spread is None or v.final_unit_spread <= limit]
        if not stuck:
            return []
        confirmed = all(v.final_unit_spread is not None for v in stuck)
        moving = facts.loss_moving
        severity = None if confirmed else Severity.INFO if moving else Severity.WARNING
        first = stuck[0]

        def describe(v: VariableFacts) -> str:
            if v.initial_rms == 0:
                scale = ", all zeros"
            elif v.initial_rms is not None:
                scale = f", initial RMS {fmt(v.initial_rms)}"
            else:
                scale = ""
            return f"{v.path} ({v.shape[-1]} units, unit spread {fmt(v.initial_unit_spread)}{scale})"

        listed = "; ".join(describe(v) for v in stuck[:3]) + (f"; and {len(stuck) - 3} more" if len(stuck) > 3 else "")
        if confirmed:
            after = max(v.final_unit_spread for v in stuck)
            tail = f"; after {facts.steps} steps they are still identical (spread {fmt(after)} <= {fmt(limit)})"
        else:
            tail = "; whether they stay identical was not measured"
        return [self.finding(
            f"{len(stuck)} hidden kernel{'s start' if len(stuck) != 1 else ' starts'} with identical units "
            f"(unit spread <= {fmt(limit)}): {listed}{tail}",
            confidence=(0.95 if confirmed else 0.7) * (0.5 if moving and not confirmed else 1),
            severity=severity, layer=first.layer,
            evidence={"variables": [v.path for v in stuck],
                      "initial_unit_spread": [v.initial_unit_spread for v in stuck],
                      "final_unit_spread": [v.final_unit_spread for v in stuck],
                      "threshold": limit},
        )]


DETECTORS = (NoTrainableWeights, SymmetricInit, DisconnectedGradient, VanishingGradient, ExplodingGradient)
