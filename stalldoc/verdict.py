"""The verdict: stalled, healthy or converged, from the loss's progress and the findings.

A stalled verdict always carries at least one warning-level finding (``unexplained-stall``
when nothing else explains it), so the default gate never passes a stalled model.
"""

from __future__ import annotations

import math

from stalldoc.detectors import by_id
from stalldoc.facts import FLAT_PROGRESS, MOVING_PROGRESS, Facts
from stalldoc.findings import Finding, Severity

__all__ = ["conclude", "output_verdicts", "verdict"]


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


def _relevant(findings: list[Finding], output: str | None) -> list[Finding]:
    """The findings that bear on one output: the whole model's and that output's own."""
    return [f for f in findings if f.output is None or f.output == output]


def output_verdicts(facts: Facts, findings: list[Finding]) -> dict[str, str] | None:
    """A multi-output model's verdict per output, from that output's loss and the findings
    that bear on it (None for a single-output model)."""
    if not facts.outputs:
        return None
    return {out.name: verdict(facts.for_output(out), _relevant(findings, out.name)) for out in facts.outputs}


def conclude(facts: Facts, findings: list[Finding], ran: list[str],
             ignore: list[str] | None = None) -> tuple[str, list[Finding]]:
    """The verdict, and the findings it implies.

    A converged model (far below its constant-predictor baseline, flat) may show saturated
    or dead units without being stalled: such state-describing findings become info. A
    stalled verdict that no warning explains gets ``unexplained-stall``; it drops
    ``slow-progress``, whose "the loss falls" is then a fall of the wrong objective (an
    inverted sign) or of a loss that is not the verdict's.

    A multi-output model is stalled when any one output is, or its total loss is while no
    output has converged: one head stuck while another trains must fail the gate too, so each
    stalled output carries a warning (``unexplained-stall`` naming the output when nothing else
    explains it). It is converged when every output is, else healthy.
    """
    if facts.outputs:
        return _conclude_outputs(facts, findings, ran, ignore)
    if any(f.id == "converged" for f in findings):
        _demote_state(findings)
    result = verdict(facts, findings)
    if result == "stalled":
        findings = [f for f in findings if f.id != "slow-progress"]
    if result == "stalled" and not _loud(findings) and "unexplained-stall" not in (ignore or []):
        findings = findings + by_id("unexplained-stall")().conclude(facts, findings, ran)
    return result, findings


def _demote_state(findings: list[Finding]) -> None:
    for f in findings:
        if by_id(f.id).describes_state and f.severity > Severity.INFO:
            f.severity = Severity.INFO
            f.message += " (the model has converged: expected of a trained network)"


def _conclude_outputs(facts: Facts, findings: list[Finding], ran: list[str],
                      ignore: list[str] | None) -> tuple[str, list[Finding]]:
    outputs = facts.outputs or []
    converged = {f.output for f in findings if f.id == "converged"}
    if all(out.name in converged for out in outputs):  # shared layers' state is expected once every head is trained
        _demote_state([f for f in findings if f.output is None])
    for name in converged:
        _demote_state([f for f in findings if f.output == name])
    explain = "unexplained-stall" not in (ignore or [])
    per_output = output_verdicts(facts, findings) or {}
    stalled = {name for name, result in per_output.items() if result == "stalled"}
    findings = [f for f in findings if not (f.id == "slow-progress" and f.output in stalled)]
    for out in outputs:
        if per_output[out.name] == "stalled" and explain and not _loud(_relevant(findings, out.name)):
            added = by_id("unexplained-stall")().conclude(facts.for_output(out), findings, ran)
            for f in added:
                f.output = out.name
            findings = findings + added
    # The total alone: a head that has converged flattens it legitimately, so it counts only
    # when none has.
    total = verdict(facts, [f for f in findings if f.output is None]) if not converged else "healthy"
    if total == "stalled" and explain and not _loud(findings):
        findings = findings + by_id("unexplained-stall")().conclude(facts, findings, ran)
    if total == "stalled" or "stalled" in per_output.values():
        return "stalled", findings
    if all(v == "converged" for v in per_output.values()):
        return "converged", findings
    return "healthy", findings
