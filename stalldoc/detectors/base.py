"""The detector unit: an id, a default severity, typed thresholds, and a documented check.

A detector's docstring has four sections — What it detects, Why it stalls training,
How to fix, Thresholds — which ``stalldoc explain ID`` prints. ``check`` is a pure
function of Facts: it returns findings, or raises ``Skip`` when the facts it needs are
missing.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from stalldoc.facts import INDEX_LAYERS, ArrayFacts, Facts, LossProbeFacts
from stalldoc.findings import Finding, Severity
from stalldoc.numbers import fmt  # noqa: F401 - re-exported: detectors format their messages with it

# The areas detectors are filed by, upstream first; each is a module of stalldoc.detectors.
AREAS = ("data", "objective", "optimization", "activations", "gradients", "outcome")


class Skip(Exception):
    """Raised by a detector that lacks the facts it needs; the message is the reason."""


@dataclass(frozen=True)
class Threshold:
    name: str
    default: float
    help: str

    def coerce(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"threshold {self.name!r} must be a number, got {value!r}")
        return float(value)


class Detector:
    """Base of every detector. Everything the rest of stalldoc reads from a detector class is
    declared here; where a detector sits in the causal chain is not a class attribute but its
    position in ``stalldoc.detectors.CAUSAL_ORDER``."""

    id: ClassVar[str]  # stable kebab-case finding id
    area: ClassVar[str]  # one of AREAS, and the name of the module the detector lives in
    summary: ClassVar[str]  # one line for `stalldoc detectors`
    severity: ClassVar[Severity] = Severity.WARNING
    thresholds: ClassVar[tuple[Threshold, ...]] = ()
    # Ids this detector's finding, when present, can account for (it is their root cause).
    explains: ClassVar[tuple[str, ...]] = ()
    # A caveat is about the diagnosis itself (e.g. the loss it had to use), not a reason the
    # training stalls: it never makes the verdict "stalled" and is never called a root cause.
    caveat: ClassVar[bool] = False
    # An error-level finding of this detector makes the loss's own progress meaningless (an
    # inverted sign, a degenerate axis, a broadcast): the verdict is "stalled" even if it fell.
    invalidates_loss: ClassVar[bool] = False
    # The finding describes the network's state (saturated or dead units), which a trained
    # model may well show: once the model has converged far below its baseline it is info.
    describes_state: ClassVar[bool] = False
    # The intervention that tests this finding as the cause (a name in stalldoc.confirm.catalog,
    # run by the confirm stage against a control); None: no automatic fix to try.
    intervention: ClassVar[str | None] = None
    # Runs after the verdict, with the other findings (``conclude``), instead of ``check``.
    after_verdict: ClassVar[bool] = False
    # Reads one output's loss, targets, predictions or task: on a multi-output model it runs
    # once per output, on that output's view (``Facts.for_output``), and its findings name
    # the output. The others (inputs, layers, gradients, the optimizer) run once, on the
    # whole model and its total loss.
    per_output: ClassVar[bool] = False

    def __init__(self, **overrides: Any) -> None:
        known = {t.name: t for t in self.thresholds}
        values = {t.name: t.default for t in self.thresholds}
        for key, value in overrides.items():
            if key not in known:
                names = ", ".join(sorted(known)) or "none"
                raise ValueError(f"{self.id}: unknown threshold {key!r} (known: {names})")
            values[key] = known[key].coerce(value)
        self.t = values

    def check(self, facts: Facts) -> list[Finding]:
        raise NotImplementedError

    def finding(self, message: str, *, confidence: float, evidence: dict[str, Any],
                fix: str | None = None, layer: str | None = None,
                severity: Severity | None = None) -> Finding:
        return Finding(
            id=self.id,
            severity=severity or self.severity,
            confidence=max(0.0, min(1.0, confidence)),
            message=message,
            fix=fix or self.default_fix(),
            layer=layer,
            evidence=evidence,
        )

    @classmethod
    def doc(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def doc_section(cls, title: str) -> str:
        """The text of one docstring section ("How to fix", ...)."""
        lines = cls.doc().splitlines()
        out: list[str] = []
        inside = False
        for line in lines:
            if line.rstrip(":").strip().lower() == title.lower():
                inside = True
                continue
            if inside and line.endswith(":") and not line.startswith(" ") and line.strip():
                break
            if inside:
                out.append(line)
        return "\n".join(out).strip()

    @classmethod
    def default_fix(cls) -> str:
        return " ".join(cls.doc_section("How to fix").replace("``", "`").split())


def ramp(value: float, low: float, high: float) -> float:
    """0 at ``low``, 1 at ``high``, linear between (either direction), clipped."""
    if high == low:
        return 1.0 if value >= high else 0.0
    return max(0.0, min(1.0, (value - low) / (high - low)))


def need_probe(facts: Facts) -> LossProbeFacts:
    """The loss probe's facts, or Skip with the reason they cannot be used."""
    lp = facts.loss_probe
    if lp is None:
        raise Skip("the loss could not be probed on predictions shaped like the targets")
    if not lp.finite:
        raise Skip("the loss probe produced non-finite values")
    if lp.range <= 0:
        raise Skip("the loss does not vary with the prediction's direction")
    return lp


def used_as_indices(arr: ArrayFacts, facts: Facts) -> bool:
    """The array holds ids (token or category indices), not magnitudes: the model consumes it
    as indices, or it is integer-valued and non-negative in a model with an Embedding (or
    another index layer) — ids stored as float32, as CSV and pandas data usually are."""
    if arr.consumed_as_indices:
        return True
    if not arr.integer_valued or not any(lf.class_name in INDEX_LAYERS for lf in facts.layers):
        return False
    lows = arr.feature_min[np.isfinite(arr.feature_min)]
    return bool(lows.size) and float(lows.min()) >= 0
