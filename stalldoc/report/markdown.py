"""A Markdown summary, fit for ``$GITHUB_STEP_SUMMARY``, a GitLab note or a pull request comment."""

from __future__ import annotations

from stalldoc.confirm.catalog import sentence
from stalldoc.findings import Report, Severity
from stalldoc.report._common import counts, first_finding_label, loss_line, output_lines, output_tag

_BADGE = {"stalled": "🔴 stalled", "healthy": "🟢 healthy", "converged": "🔵 converged"}
_SEVERITY = {Severity.ERROR: "❌ error", Severity.WARNING: "⚠️ warning", Severity.INFO: "ℹ️ info"}


def _cell(text: object) -> str:
    """Inline text: newlines folded; pipes and angle brackets escaped (no stray HTML)."""
    text = " ".join(str(text).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _code(text: object) -> str:
    return f"`{str(text).replace('`', '')}`"


def _percent(share: object) -> str:
    return f"{share * 100:.3g}%" if isinstance(share, (int, float)) and share == share else "non-finite"


def _confirmation(report: Report) -> list[str]:
    """The confirm stage: each tested finding's sentence, then every counterfactual run."""
    tested = [f for f in report.findings if f.confirmation and f.confirmation.get("status") != "not-tested"]
    if not tested and not report.interventions:
        return []
    out = ["### Confirmation", ""]
    out += [f"- **{f.id}** {_cell(sentence(f.confirmation))}" for f in tested]
    if report.interventions:
        out += ["", "| run | findings | learning rate | progress to the floor | steps | seconds |",
                "| --- | --- | ---: | ---: | ---: | ---: |"]
        for run in report.interventions:
            what = run.get("intervention", run.get("name", "?")) + (f" ({run['detail']})" if run.get("detail") else "")
            rate = run.get("learning_rate")
            out.append(f"| {_cell(what)} | {_cell(', '.join(run.get('findings', [])))} | "
                       f"{'' if rate is None else f'{rate:g}'} | {_percent(run.get('progress'))} | "
                       f"{run.get('steps', '')} | {run.get('seconds', '')} |")
    out.append("")
    return out


def render(report: Report, **_: object) -> str:
    model = report.model.path or "model"
    data = report.data.path or "data"
    out = [f"## stalldoc: {_BADGE.get(report.verdict, report.verdict)} — {_code(model)} on {_code(data)}", ""]
    out.append(f"{_cell(loss_line(report).replace('->', '→'))} · {counts(report)}")
    out.append("")
    outputs = output_lines(report)
    if outputs:
        out += [f"- {_cell(line.replace('->', '→'))}" for line in outputs] + [""]
    root = report.root_cause
    if root is not None:
        label = first_finding_label(report).capitalize()
        tag = f" {_cell(output_tag(root))}" if root.output is not None else ""
        out += [f"**{label}:** {_code(root.id)}{tag} — {_cell(root.message)}", ""]
        confirmed = sentence(root.confirmation)
        if confirmed:
            out += [f"> {_cell(confirmed)}", ""]
    elif report.verdict == "stalled":
        out += ["The loss did not move and no detector found a cause.", ""]
    if report.findings:
        out += ["| # | severity | finding | layer | measured | explains |",
                "| ---: | --- | --- | --- | --- | --- |"]
        for n, f in enumerate(report.findings, start=1):
            tag = f" {_cell(output_tag(f))}" if f.output is not None else ""
            out.append(f"| {n} | {_SEVERITY[f.severity]} | {_code(f.id)}{tag} | {_cell(f.layer or '')} | "
                       f"{_cell(f.message)} | {_cell(', '.join(f.explains))} |")
        out.append("")
        explained = {other for f in report.findings for other in f.explains}
        fixes = []
        for f in report.findings:
            line = f"- **{f.id}**: {_cell(f.fix)}"
            if f.id not in explained and line not in fixes:
                fixes.append(line)
        if fixes:
            out += ["### How to fix", "", *fixes, ""]
    out += _confirmation(report)
    if report.errors:
        out += ["### Detector errors", ""]
        out += [f"- {_code(e.detector)} crashed: {_cell(e.error)}" for e in report.errors]
        out.append("")
    if report.skipped or report.passed:
        out += [f"<details><summary>{len(report.passed)} passed, {len(report.skipped)} skipped</summary>", ""]
        if report.passed:
            out.append("Passed: " + ", ".join(_code(p) for p in report.passed))
            out.append("")
        for s in report.skipped:
            out.append(f"- skipped {_code(s.detector)}: {_cell(s.reason)}")
        out += ["", "</details>", ""]
    out.append("_`stalldoc explain ID` says what a finding means and how to fix it._")
    return "\n".join(out) + "\n"
