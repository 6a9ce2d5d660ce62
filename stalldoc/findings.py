"""Findings and the report: the result of a diagnosis, independent of how it is rendered."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected info, warning or error)") from None


VERDICTS = ("stalled", "healthy", "converged")


@dataclass
class Finding:
    id: str
    severity: Severity
    confidence: float
    message: str
    fix: str
    layer: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    explains: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity.label,
            "confidence": round(float(self.confidence), 3),
            "layer": self.layer,
            "message": self.message,
            "evidence": _jsonable(self.evidence),
            "fix": self.fix,
            "explains": list(self.explains),
        }


@dataclass
class Skipped:
    detector: str
    reason: str


@dataclass
class DetectorError:
    detector: str
    error: str


@dataclass
class Report:
    model: dict[str, Any]
    data: dict[str, Any]
    loss: dict[str, Any]
    verdict: str
    findings: list[Finding]
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[DetectorError] = field(default_factory=list)
    # Everything measured, for renderers that show more than findings (not in the JSON contract).
    facts: Any = None
    passed: list[str] = field(default_factory=list)  # detectors that ran and found nothing

    def blocking(self, fail_on: Severity | str = Severity.WARNING) -> list[Finding]:
        """Findings at or above ``fail_on`` — what a CI gate fails on."""
        level = Severity.parse(fail_on) if isinstance(fail_on, str) else fail_on
        return [f for f in self.findings if f.severity >= level]

    @property
    def root_cause(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def to_dict(self) -> dict[str, Any]:
        from stalldoc import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "stalldoc_version": __version__,
            "model": _jsonable(self.model),
            "data": _jsonable(self.data),
            "loss": _jsonable(self.loss),
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "skipped": [{"detector": s.detector, "reason": s.reason} for s in self.skipped],
            "errors": [{"detector": e.detector, "error": e.error} for e in self.errors],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NumPy scalars become floats, NaN/Inf become null, tuples lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "f") in "iu":
        return int(value)
    if not math.isfinite(number):
        return None
    return float(f"{number:.6g}")
