"""Ranking: the root cause first, the symptoms it explains after it; and the verdict."""

from __future__ import annotations

import math

from stalldoc.detectors import by_id
from stalldoc.facts import Facts
from stalldoc.findings import Finding, Severity

# Progress is the share of the way from the loss's starting value to its floor (the loss at
# a perfect prediction) covered by the probe's steps; without a known floor, its relative
# fall. Measured over 20 steps: healthy sample 41%, healthy zoo models 3.3% (small CNN) to
# 84%; stalled samples 0.0-0.9%; a model that only learns its output bias because every
# ReLU before it is dead, 2.5%. So below FLAT_PROGRESS the loss is flat; at or above
# MOVING_PROGRESS it moves; in between it counts as stalled only when a warning-level cause
# was found.
FLAT_PROGRESS = 0.01
MOVING_PROGRESS = 0.05


def loss_progress(facts: Facts) -> float:
    """Share of the way from the initial loss to its floor covered by the probe's steps.

    Positive when the loss falls, negative when it rises, NaN when it became non-finite.
    """
    loss = facts.loss
    if not (math.isfinite(loss.initial) and math.isfinite(loss.final)):
        return float("nan")
    floor = loss.floor if loss.floor is not None and math.isfinite(loss.floor) else None
    if floor is not None and loss.initial - floor > 1e-12:
        return (loss.initial - loss.final) / (loss.initial - floor)
    return -loss.relative_change


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
    if any(f.id == "converged" for f in findings):
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
    return "stalled" if any(f.severity >= Severity.WARNING for f in findings) else "healthy"
