"""The detector registry (an explicit tuple, in documentation order: by area, upstream first)
and the causal order that ranking uses.

Adding a detector: write it in the module of its area (``detectors/<area>.py``, listed in that
module's DETECTORS), place its id in CAUSAL_ORDER, and test it in
``tests/detectors/test_<area>.py``.
"""

from __future__ import annotations

import traceback
from typing import Any

from stalldoc.detectors import activations, data, gradients, objective, optimization, outcome
from stalldoc.detectors.base import Detector, Skip, Threshold
from stalldoc.facts import Facts
from stalldoc.findings import DetectorError, Finding, Skipped

REGISTRY: tuple[type[Detector], ...] = (
    *data.DETECTORS,
    *objective.DETECTORS,
    *optimization.DETECTORS,
    *activations.DETECTORS,
    *gradients.DETECTORS,
    *outcome.DETECTORS,
)

# The causal chain, upstream first. A fault upstream (the data, the objective, the optimizer)
# can produce the findings downstream (activations, then gradients), not the other way round;
# so among findings of equal severity that no other finding explains, the earlier one here is
# shown first (rank.py). Ids in one tuple are peers: their confidence orders them.
CAUSAL_ORDER: tuple[tuple[str, ...], ...] = (
    # what the network is fed and asked to predict
    ("non-finite-data",),
    ("constant-input",),
    ("unnormalized-input", "unnormalized-target"),
    ("no-trainable-weights",),
    ("symmetric-init",),
    ("shape-mismatch",),
    ("constant-target",),
    ("zero-norm-target",),
    # the objective
    ("loss-not-rebuilt",),
    ("single-unit-softmax",),
    ("loss-output-mismatch",),
    ("inverted-loss",),
    ("degenerate-cosine-axis",),
    ("unnormalized-cosine-distance",),
    ("output-range-mismatch",),
    ("large-output-norm",),
    # the optimizer's steps
    ("learning-rate-too-high",),
    ("learning-rate-too-low",),
    ("optimizer-plateau",),
    ("converged",),
    # the forward signal
    ("exploding-activation",),
    ("saturated-activation",),
    ("dead-relu",),
    ("vanishing-activation",),
    # the backward signal
    ("exploding-gradient",),
    ("vanishing-gradient",),
    ("disconnected-gradient",),
    # the outcome: what the loss did, explained by any cause above
    ("batchnorm-lag", "slow-progress"),
    ("chance-level",),
    ("unexplained-stall",),
)
_POSITION = {detector_id: i for i, peers in enumerate(CAUSAL_ORDER) for detector_id in peers}

__all__ = ["CAUSAL_ORDER", "REGISTRY", "Detector", "Skip", "Threshold", "by_id", "causal_position",
           "run_detectors"]


def causal_position(detector_id: str) -> int:
    """Where an id sits in CAUSAL_ORDER (0 = furthest upstream); unknown ids come last."""
    return _POSITION.get(detector_id, len(CAUSAL_ORDER))


def by_id(detector_id: str) -> type[Detector]:
    for cls in REGISTRY:
        if cls.id == detector_id:
            return cls
    raise KeyError(detector_id)


def run_detectors(
    facts: Facts,
    *,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    thresholds: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[Finding], list[Skipped], list[DetectorError], list[str]]:
    """Run every selected detector; a crash is recorded and the others still run.

    On a multi-output model a ``per_output`` detector runs once per output, on that output's
    view, and its findings name the output; it counts as skipped when it skipped every output,
    and as passed when it found nothing on any."""
    thresholds = thresholds or {}
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    errors: list[DetectorError] = []
    passed: list[str] = []
    for cls in REGISTRY:
        if cls.after_verdict or (select and cls.id not in select):
            continue  # after_verdict detectors are run by the verdict stage (stalldoc.verdict)
        if ignore and cls.id in ignore:
            skipped.append(Skipped(cls.id, "ignored by configuration"))
            continue
        detector = cls(**thresholds.get(cls.id, {}))
        views = [facts.for_output(out) for out in facts.outputs] if cls.per_output and facts.outputs else [facts]
        found, skips, crashed = [], [], False
        for view in views:
            tag = f"output {view.output!r}: " if view.output is not None else ""
            try:
                found_here = detector.check(view)
            except Skip as skip:
                skips.append((tag, str(skip)))
                continue
            except Exception as exc:  # noqa: BLE001 - a crashing detector must not stop the others
                last = traceback.extract_tb(exc.__traceback__)[-1]
                errors.append(DetectorError(cls.id, f"{tag}{type(exc).__name__}: {exc} "
                                                    f"({last.filename}:{last.lineno})"))
                crashed = True
                continue
            for f in found_here:
                f.output = view.output
            found.extend(found_here)
        if crashed:
            continue
        findings.extend(found)
        if len(skips) == len(views):  # one reason when every output skipped for the same one
            reasons = {reason for _, reason in skips}
            skipped.append(Skipped(cls.id, reasons.pop() if len(reasons) == 1
                                   else "; ".join(tag + reason for tag, reason in skips)))
        elif not found:
            passed.append(cls.id)
    return findings, skipped, errors, passed
