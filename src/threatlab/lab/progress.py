"""A progress bar on stderr that appears only when work lasts longer than a second.

Shown when stderr is a terminal, or when asked (`enabled=True`, or THREATLAB_PROGRESS=1); never
when THREATLAB_PROGRESS=0. It writes to stderr only, so `--json` output on stdout stays clean.
"""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType

PROGRESS_ENV = "THREATLAB_PROGRESS"
DELAY_S = 1.0


def progress_wanted(enabled: bool | None = None) -> bool:
    if enabled is not None:
        return enabled
    env = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if env in ("1", "true", "yes"):
        return True
    if env in ("0", "false", "no"):
        return False
    return sys.stderr.isatty()


class LazyProgress:
    """`with LazyProgress(total, "tcp.blind-rst") as p: ... p.advance()`; a no-op when disabled."""

    def __init__(self, total: int, description: str, enabled: bool | None = None, delay_s: float | None = None) -> None:
        self.total = total
        self.description = description
        self.enabled = progress_wanted(enabled) and total > 0
        self.delay_s = DELAY_S if delay_s is None else delay_s
        self.completed = 0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._progress = None
        self._task = None
        self._closed = False

    def __enter__(self) -> LazyProgress:
        if self.enabled:
            self._timer = threading.Timer(self.delay_s, self._start)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with self._lock:
            if self._closed or self._progress is not None:
                return
            progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            progress.start()
            self._task = progress.add_task(self.description, total=self.total, completed=self.completed)
            self._progress = progress

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.completed += n
            if self._progress is not None:
                self._progress.update(self._task, completed=self.completed)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
