"""Ranking: the root cause first, the symptoms it explains after it.

Measured evidence first: a finding the confirm stage *confirmed* (its fix made the loss move)
ranks first — one that another present cause explains after that cause — the largest effect
first. A *refuted* one (its fix changed nothing) explains
nothing and comes after its unconfirmed peers, but still before the outcome findings of the
same severity (what the loss did is never its own cause). For the rest the static
``explains`` graph and the causal order are the prior.
"""

from __future__ import annotations

import math

from stalldoc.detectors import by_id, causal_position
from stalldoc.findings import Finding, Severity

__all__ = ["rank"]


def status(f: Finding) -> str | None:
    """The confirm stage's verdict on this finding (None when the stage did not run)."""
    return (f.confirmation or {}).get("status")


def effect(f: Finding) -> float:
    """A confirmed finding's measured effect: its fix's progress beyond the control's."""
    c = f.confirmation or {}
    try:
        value = float(c.get("progress")) - max(0.0, float(c.get("control_progress") or 0.0))
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0


def related(cause: Finding, other: Finding) -> bool:
    """Whether ``cause`` can account for ``other``: a finding about one output of a
    multi-output model explains only that output's findings and the whole model's."""
    return cause.output is None or other.output is None or cause.output == other.output


def rank(findings: list[Finding]) -> list[Finding]:
    """Order findings root cause first and fill each finding's ``explains``."""
    explainers: dict[int, set[str]] = {}  # id(finding) -> ids of the findings that explain it
    for f in findings:
        f.explains = []
        if f.severity < Severity.WARNING or status(f) == "refuted":
            continue  # an informational note, or a refuted cause, is not offered as the cause of anything
        cls = by_id(f.id)
        candidates = [o for o in findings if o.id != f.id and related(f, o)]
        # A cause accounts for the outcome it produces: a loss at chance, a stall.
        outcomes = [] if cls.area == "outcome" or cls.caveat else \
            [o.id for o in candidates if by_id(o.id).area == "outcome" and o.severity >= Severity.WARNING]
        for other in [*cls.explains, *outcomes]:
            matching = [o for o in candidates if o.id == other]
            if matching and other not in f.explains:
                f.explains.append(other)
            for o in matching:
                explainers.setdefault(id(o), set()).add(f.id)

    def explained(f: Finding) -> bool:
        # Explained by another finding that this one does not explain in turn (no cycles).
        return any(e not in f.explains for e in explainers.get(id(f), ()))

    for f in findings:
        if f.explains and not explained(f):
            f.confidence = min(0.99, f.confidence + 0.03 * len(f.explains))

    def key(f: Finding) -> tuple:
        confirmed = status(f) == "confirmed"
        # An outcome (chance-level, unexplained-stall) says what the loss did, not why: a cause
        # of the same severity comes first even when a bounded test of its fix failed.
        outcome = by_id(f.id).area == "outcome"
        # Among confirmed causes, one that another confirmed cause accounts for comes after it
        # (standardizing 0..100 targets helps a sigmoid head, but the head is why they matter);
        # then the larger effect first.
        return (not confirmed, explained(f), -effect(f) if confirmed else 0.0, -int(f.severity), outcome,
                status(f) == "refuted", causal_position(f.id), -f.confidence)

    return sorted(findings, key=key)
