"""The JSON report (schema_version 1, see DESIGN.md): a plain function of the Report."""

from __future__ import annotations

from stalldoc.findings import Report


def render(report: Report, **_: object) -> str:
    return report.to_json(indent=2) + "\n"
