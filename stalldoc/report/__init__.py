"""Renderers: each turns a Report into text. They only render; they never measure."""

from __future__ import annotations

from collections.abc import Callable

from stalldoc.findings import Report

FORMATS = ("text", "json", "junit", "github", "markdown", "html")


def renderer(fmt: str) -> Callable[..., str]:
    """The render function for a format, imported only when used (rich only for text,
    matplotlib only for html)."""
    if fmt == "json":
        from stalldoc.report.json_report import render
    elif fmt == "text":
        from stalldoc.report.text import render
    elif fmt == "junit":
        from stalldoc.report.junit import render
    elif fmt == "github":
        from stalldoc.report.github import render
    elif fmt == "markdown":
        from stalldoc.report.markdown import render
    elif fmt == "html":
        from stalldoc.report.html import render
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return render


__all__ = ["FORMATS", "Report", "renderer"]
