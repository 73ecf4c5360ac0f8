"""Progress bars for long commands (replay, fixes, export): rich.progress on stderr.

rich, not tqdm: the backend's live table already needs rich, so one library serves both.
A bar is shown only when stderr is a terminal, --quiet is not given and the command's own
output does not go to that terminal (lines and a bar would garble each other); otherwise
nothing is drawn and rich is not even imported. Updates are throttled to ~10 per second,
so the cost on a hot loop is a counter and a clock read per chunk.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

Update = Callable[[int, int], None]  # (done, total)
INTERVAL_S = 0.1


def wanted(quiet: bool = False, output: Any = None) -> bool:
    """True when a bar belongs on stderr: a terminal, not --quiet, not shared with `output`."""
    if quiet or not _isatty(sys.stderr):
        return False
    return output is None or not _isatty(output)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False


@contextlib.contextmanager
def bar(description: str, enabled: bool, unit: str = "bytes", total: int | None = None) -> Iterator[Update | None]:
    """A throttled update(done, total) while the bar is shown, or None when it is not."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    count = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    progress = Progress(TextColumn("[bold]%s" % description), BarColumn(), count, TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True, redirect_stdout=False,
                        redirect_stderr=False, refresh_per_second=10)
    task = progress.add_task(description, total=total)
    last = [0.0]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= INTERVAL_S or done >= total:
            last[0] = now
            progress.update(task, completed=done, total=total)

    with progress:
        yield update


class CountingSource:
    """Wraps a hal byte source and reports the bytes read (of a file of `total` bytes)."""

    def __init__(self, source: Any, total: int, update: Update) -> None:
        self.source = source
        self.is_live = source.is_live
        self.total = total
        self.done = 0
        self._update = update
        self._next = 0.0

    def read(self) -> bytes:
        data = self.source.read()
        self.done += len(data)
        if not data:
            self._update(self.total, self.total)  # the end: comment lines were never counted
        else:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + INTERVAL_S
                self._update(min(self.done, self.total), self.total)
        return data

    def close(self) -> None:
        self.source.close()


@contextlib.contextmanager
def trace_bar(path: str, description: str, enabled: bool) -> Iterator[Callable[[Any], Any] | None]:
    """For a trace file: a wrapper to put around the stream's source, or None (no bar)."""
    try:
        total = os.path.getsize(path) if enabled and os.path.isfile(path) else 0
    except OSError:
        total = 0
    with bar(description, enabled and total > 0, total=total) as update:
        if update is None:
            yield None
        else:
            yield lambda source: CountingSource(source, total, update)
