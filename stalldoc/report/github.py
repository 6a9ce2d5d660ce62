"""GitHub Actions workflow commands: one annotation per finding.

``::error``/``::warning``/``::notice`` by severity, with a title naming the finding id, so
each finding shows on the run's summary page (and on the model file when it is in the
repository). Chosen automatically when ``GITHUB_ACTIONS=true`` and no ``--format`` is given.
See https://docs.github.com/actions/reference/workflow-commands-for-github-actions.
"""

from __future__ import annotations

from stalldoc.confirm.catalog import sentence
from stalldoc.findings import Report, Severity
from stalldoc.report._common import counts, first_finding_label, loss_line, output_tag

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, message: str, **props: str | None) -> str:
    fields = ",".join(f"{k}={_escape_property(v)}" for k, v in props.items() if v)
    return f"::{kind} {fields}::{_escape_data(message)}" if fields else f"::{kind}::{_escape_data(message)}"


def render(report: Report, **_: object) -> str:
    model = report.model.path
    lines = []
    explained = {other for f in report.findings for other in f.explains}
    for rank, f in enumerate(report.findings, start=1):
        title = f"stalldoc {f.id}" + (f" {output_tag(f)}" if f.output is not None else "") \
            + (f" (layer {f.layer})" if f.layer else "")
        body = f.message
        if f.id not in explained:
            body += f"\nfix: {f.fix}"
        if f.explains:
            body += f"\nexplains: {', '.join(f.explains)}"
        if f.confirmation and (f.confirmation.get("status") != "not-tested" or rank == 1):
            body += f"\n{sentence(f.confirmation)}"
        if rank == 1 and first_finding_label(report) == "root cause":
            body = "root cause: " + body
        lines.append(_command(_COMMAND[f.severity], body, file=model, title=title))
    if report.verdict == "stalled" and not report.findings:
        lines.append(_command("warning", "the loss did not move and no detector found a cause",
                              file=model, title="stalldoc stalled"))
    for e in report.errors:
        lines.append(_command("error", f"detector {e.detector} crashed: {e.error}", file=model,
                              title=f"stalldoc {e.detector} crashed"))
    lines.append(f"stalldoc: {report.verdict}: {counts(report)}; {loss_line(report)}")
    return "\n".join(lines) + "\n"
