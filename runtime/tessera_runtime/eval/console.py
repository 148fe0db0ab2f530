"""A rich progress display for evaluations run from a terminal."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .runner import ProgressSink


class RichProgress(ProgressSink):
    """One progress bar per task, counting requests; use as a context manager."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )  # fmt: skip
        self._bars: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def task_started(self, name: str) -> None:
        self._bars[name] = self._progress.add_task(name, total=None)

    def set_total(self, name: str, total: int) -> None:
        self._progress.update(self._bars[name], total=total)

    def advance(self, name: str, count: int) -> None:
        self._progress.advance(self._bars[name], count)

    def task_finished(self, name: str, verdict: str) -> None:
        self._progress.update(self._bars[name], description=f"{name} ({verdict})")
