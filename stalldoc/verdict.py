"""The verdict: stalled, healthy or converged, from the loss's progress and the findings.

A stalled verdict always carries at least one warning-level finding (``unexplained-stall``
when nothing else explains it), so the default gate never passes a stalled model.
"""

from __future__ import annotations

import math

from stalldoc.detectors import by_id
from stalldoc.facts import FLAT_PROGRESS, MOVING_PROGRESS, Facts
from stalldoc.findings import Finding, Severity

__all__ = ["conclude", "verdict"]


def _loud(findings: list[Finding]) -> bool:
    return any(f.severity >= Severity.WARNING and not by_id(f.id).caveat for f in findings)


def verdict(facts: Facts, findings: list[Finding]) -> str:
    ids = {f.id for f in findings}
    if "converged" in ids and not _loud(findings):
        return "converged"
    # An objective fault (an inverted sign, a degenerate axis) makes the loss's own progress
    # meaningless: it may fall while the predictions move away from the targets.
    if any(f.severity >= Severity.ERROR and by_id(f.id).invalidates_loss for f in findings):
        return "stalled"
    if "chance-level" in ids:
        return "stalled"
    progress = facts.progress
    if not math.isfinite(progress) or progress < FLAT_PROGRESS:
        return "stalled"
    if progress >= MOVING_PROGRESS:
        return "healthy"
    return "stalled" if _loud(findings) else "healthy"


def conclude(facts: Facts, findings: list[Finding], ran: list[str],
             ignore: list[str] | None = None) -> tuple[str, list[Finding]]:
    """The verdict, and the findings it implies.

    A converged model (far below its constant-predictor baseline, flat) may show saturated
    or dead units without being stalled: such state-describing findings become info. A
    stalled verdict that no warning explains gets ``unexplained-stall``; it drops
    ``slow-progress``, whose "the loss falls" is then a fall of the wrong objective (an
    inverted sign) or of a loss that is not the verdict's.
    """
    if any(f.id == "converged" for f in findings):
        for f in findings:
            if by_id(f.id).describes_state and f.severity > Severity.INFO:
                f.severity = Severity.INFO
                f.message += " (the model has converged: expected of a trained network)"
    result = verdict(facts, findings)
    if result == "stalled":
        findings = [f for f in findings if f.id != "slow-progress"]
    if result == "stalled" and not _loud(findings) and "unexplained-stall" not in (ignore or []):
        findings = findings + by_id("unexplained-stall")().conclude(facts, findings, ran)
    return result, findings
