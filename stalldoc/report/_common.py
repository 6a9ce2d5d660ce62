"""Helpers shared by the renderers (the plain-text ones and the terminal one). No rich here."""

from __future__ import annotations

from stalldoc.findings import Finding, Report, Severity
from stalldoc.numbers import num, signed_percent


def loss_line(report: Report) -> str:
    """'loss cosine: 0.98 -> 0.98 (-0.10%) over 20 steps of batch 64'."""
    loss = report.loss
    text = f"loss {loss.name}: {num(loss.initial)} -> {num(loss.final)} ({signed_percent(loss.relative_change)})"
    if loss.steps is not None:
        text += f" over {loss.steps} steps"
        if loss.batch_size is not None:
            text += f" of batch {loss.batch_size}"
    return text


def output_tag(f: Finding) -> str:
    """'[output: age]' for a finding about one output of a multi-output model, else ''."""
    return f"[output: {f.output}]" if f.output is not None else ""


def output_lines(report: Report) -> list[str]:
    """A multi-output model's outputs, one line each: 'output age (stalled): loss
    mean_squared_error 1.2 -> 1.19, 0.4% of the way to its floor, constant-predictor level 1.1'."""
    lines = []
    for out in report.outputs or []:
        loss = out.get("loss") or {}
        progress = loss.get("progress")
        moved = f"{num(progress * 100)}% of the way to its floor" if progress is not None else "progress unknown"
        text = (f"output {out['name']} ({out.get('verdict')}): loss {loss.get('name')} "
                f"{num(loss.get('initial'))} -> {num(loss.get('final'))}, {moved}")
        if loss.get("baseline") is not None:
            text += f", constant-predictor level {num(loss['baseline'])}"
        if out.get("weight") not in (None, 1, 1.0):
            text += f" (weight {num(out['weight'])})"
        lines.append(text)
    return lines


def threshold(report: Report, detector_id: str, name: str) -> float:
    """A detector's threshold as the diagnosis ran it: the report's override, else its default."""
    from stalldoc.detectors import by_id

    return by_id(detector_id)(**report.thresholds.get(detector_id, {})).t[name]


def detector_order(report: Report) -> list[str]:
    """Every detector the report mentions, once, in registry order (unknown ids last)."""
    from stalldoc.detectors import REGISTRY

    mentioned: list[str] = []
    for name in ([f.id for f in report.findings] + list(report.passed)
                 + [s.detector for s in report.skipped] + [e.detector for e in report.errors]):
        if name not in mentioned:
            mentioned.append(name)
    known = [cls.id for cls in REGISTRY if cls.id in mentioned]
    return known + [name for name in mentioned if name not in known]


def area_of(detector_id: str) -> str:
    from stalldoc.detectors import by_id

    try:
        return by_id(detector_id).area
    except KeyError:
        return "other"


def by_detector(findings: list[Finding]) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = {}
    for f in findings:
        grouped.setdefault(f.id, []).append(f)
    return grouped


def counts(report: Report) -> str:
    """'2 errors, 1 warning' or 'no findings'."""
    parts = []
    for sev in (Severity.ERROR, Severity.WARNING, Severity.INFO):
        n = sum(1 for f in report.findings if f.severity == sev)
        if n:
            parts.append(f"{n} {sev.label}{'s' if n != 1 else ''}")
    return ", ".join(parts) or "no findings"


def first_finding_label(report: Report) -> str:
    """"root cause" when the run stalled and the first finding is a cause, else "top finding"."""
    from stalldoc.detectors import by_id

    root = report.root_cause
    if root is not None and report.verdict == "stalled" and not by_id(root.id).caveat:
        return "root cause"
    return "top finding"
