"""The detector registry: an explicit tuple, in documentation order."""

from __future__ import annotations

import traceback
from typing import Any

from stalldoc.detectors import activations, data, gradients, objective, optimization
from stalldoc.detectors.base import Detector, Skip, Threshold
from stalldoc.facts import Facts
from stalldoc.findings import DetectorError, Finding, Skipped

REGISTRY: tuple[type[Detector], ...] = (
    *data.DETECTORS,
    *objective.DETECTORS,
    *optimization.DETECTORS,
    *activations.DETECTORS,
    *gradients.DETECTORS,
)

__all__ = ["REGISTRY", "Detector", "Skip", "Threshold", "by_id", "run_detectors"]


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
    """Run every selected detector; a crash is recorded and the others still run."""
    thresholds = thresholds or {}
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    errors: list[DetectorError] = []
    passed: list[str] = []
    for cls in REGISTRY:
        if select and cls.id not in select:
            continue
        if ignore and cls.id in ignore:
            skipped.append(Skipped(cls.id, "ignored by configuration"))
            continue
        detector = cls(**thresholds.get(cls.id, {}))
        try:
            found = detector.check(facts)
        except Skip as skip:
            skipped.append(Skipped(cls.id, str(skip)))
            continue
        except Exception as exc:  # noqa: BLE001 - a crashing detector must not stop the others
            last = traceback.extract_tb(exc.__traceback__)[-1]
            errors.append(DetectorError(cls.id, f"{type(exc).__name__}: {exc} ({last.filename}:{last.lineno})"))
            continue
        findings.extend(found)
        if not found:
            passed.append(cls.id)
    return findings, skipped, errors, passed
