"""Progress of a fetch: a rich progress bar on a terminal, periodic log lines otherwise (pod logs)."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

log = logging.getLogger("tessera_runtime.fetch")


class FetchProgress:
    """Counts bytes; shows a bar when stderr is a terminal, else logs every `log_every` seconds."""

    def __init__(
        self, total_bytes: int, files: int, *, tty: bool | None = None, log_every: float = 5.0
    ) -> None:
        self.total = total_bytes
        self.files = files
        self.done = 0
        self._tty = sys.stderr.isatty() if tty is None else tty
        self._log_every = log_every
        self._last_log = 0.0
        self._started = time.monotonic()
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> FetchProgress:
        if self._tty:
            self._bar = Progress(
                TextColumn("[bold]fetch[/bold] {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(f"{self.files} files", total=self.total)
        else:
            log.info("fetching %d files, %.1f MiB", self.files, self.total / 2**20)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif kind is None:
            elapsed = max(time.monotonic() - self._started, 1e-6)
            log.info(
                "fetched %.1f MiB in %.1fs (%.1f MiB/s)",
                self.done / 2**20,
                elapsed,
                self.done / 2**20 / elapsed,
            )

    def advance(self, nbytes: int) -> None:
        """Count `nbytes` more (downloaded, or found already present)."""
        self.done += nbytes
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.done)
            return
        now = time.monotonic()
        if now - self._last_log >= self._log_every:
            self._last_log = now
            percent = 100.0 * self.done / self.total if self.total else 100.0
            log.info("progress: %.1f%% (%.1f of %.1f MiB)", percent, self.done / 2**20, self.total / 2**20)

    def note(self, message: str) -> None:
        """A one-off message (a skipped or resumed file)."""
        if self._bar is not None:
            self._bar.console.log(message)
        else:
            log.info("%s", message)
