"""Progress on stderr: a live bar on a terminal, nothing when piped (CI logs stay clean)."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, *, enabled: bool, total: int, label: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total
        self.label = label
        self._progress = None
        self._task = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(f"{self.label}: starting", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def stage(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self.label}: {text}")

    def step(self, done: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, description=f"{self.label}: step {done}/{self.total}")
