"""Ranking: the root cause first, the symptoms it explains after it."""

from __future__ import annotations

from stalldoc.detectors import by_id, causal_position
from stalldoc.findings import Finding, Severity

__all__ = ["rank"]


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
        return (explained(f), -int(f.severity), causal_position(f.id), -f.confidence)

    return sorted(findings, key=key)
