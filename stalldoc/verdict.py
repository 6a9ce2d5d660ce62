"""The verdict: stalled, healthy or converged, from the loss's progress and the findings."""

from __future__ import annotations

import math

from stalldoc.detectors import by_id
from stalldoc.facts import FLAT_PROGRESS, MOVING_PROGRESS, Facts
from stalldoc.findings import Finding, Severity

__all__ = ["verdict"]


def verdict(facts: Facts, findings: list[Finding]) -> str:
    loud = any(f.severity >= Severity.WARNING and not by_id(f.id).caveat for f in findings)
    if any(f.id == "converged" for f in findings) and not loud:
        return "converged"
    # An objective fault (an inverted sign, a degenerate axis) makes the loss's own progress
    # meaningless: it may fall while the predictions move away from the targets.
    if any(f.severity >= Severity.ERROR and by_id(f.id).invalidates_loss for f in findings):
        return "stalled"
    progress = facts.progress
    if not math.isfinite(progress) or progress < FLAT_PROGRESS:
        return "stalled"
    if progress >= MOVING_PROGRESS:
        return "healthy"
    return "stalled" if loud else "healthy"
