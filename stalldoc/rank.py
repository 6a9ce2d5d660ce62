"""Ranking: the root cause first, the symptoms it explains after it; and the verdict."""

from __future__ import annotations

import math

from stalldoc.detectors import by_id
from stalldoc.facts import Facts
from stalldoc.findings import Finding, Severity
from stalldoc.trajectory import FLAT_PROGRESS, MOVING_PROGRESS, loss_progress

__all__ = ["FLAT_PROGRESS", "MOVING_PROGRESS", "loss_progress", "rank", "verdict"]

def rank(findings: list[Finding]) -> list[Finding]:
    """Order findings root cause first and fill each finding's ``explains``."""
    present = {f.id for f in findings}
    explainers: dict[str, set[str]] = {}
    for f in findings:
        f.explains = []
        if f.severity < Severity.WARNING:
            continue  # an informational note is not offered as the cause of anything
        for other in by_id(f.id).explains:
            if other in present and other != f.id:
                f.explains.append(other)
                explainers.setdefault(other, set()).add(f.id)

    def explained(f: Finding) -> bool:
        # Explained by another finding that this one does not explain in turn (no cycles).
        return any(e not in f.explains for e in explainers.get(f.id, ()))

    for f in findings:
        if f.explains and not explained(f):
            f.confidence = min(0.99, f.confidence + 0.03 * len(f.explains))

    def key(f: Finding) -> tuple:
        return (explained(f), -int(f.severity), by_id(f.id).causal_rank, -f.confidence)

    return sorted(findings, key=key)


def verdict(facts: Facts, findings: list[Finding]) -> str:
    loud = any(f.severity >= Severity.WARNING and not by_id(f.id).caveat for f in findings)
    if any(f.id == "converged" for f in findings) and not loud:
        return "converged"
    # An objective fault (an inverted sign, a degenerate axis) makes the loss's own progress
    # meaningless: it may fall while the predictions move away from the targets.
    if any(f.severity >= Severity.ERROR and getattr(by_id(f.id), "invalidates_loss", False) for f in findings):
        return "stalled"
    progress = loss_progress(facts)
    if not math.isfinite(progress) or progress < FLAT_PROGRESS:
        return "stalled"
    if progress >= MOVING_PROGRESS:
        return "healthy"
    return "stalled" if loud else "healthy"
