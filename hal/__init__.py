"""Hardware abstraction for the GNSS receiver: bytes in, validated ``Fix`` objects out.

``iter_fixes`` is the one call the rest of the emulator needs; the pieces (source, framer,
epoch assembler) are exposed for tests and tools that want counters or partial pipelines.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType

from tcu.firmware.errors import SourceError
from tcu.firmware.fix import Fix

from .framer import NmeaFramer
from .nmea import EpochAssembler
from .sources import SerialSource, TraceFile, open_source

__all__ = ["EpochAssembler", "FixStream", "NmeaFramer", "iter_fixes", "open_source"]


class FixStream:
    """Iterator of the fixes of one source; also a context manager that closes it.

    A trace ends at end of file, where the last epoch is flushed. A live source never ends
    by itself; there, a read timeout (the receiver went quiet after its burst of sentences)
    also completes the epoch in progress, so a fix is not held back until the next second.
    """

    def __init__(self, source: TraceFile | SerialSource) -> None:
        self.source = source
        self.is_live = source.is_live
        self.framer = NmeaFramer()
        self.assembler = EpochAssembler()
        self._ready: deque[Fix] = deque()
        self._done = False
        self._pending_error: SourceError | None = None

    def __iter__(self) -> FixStream:
        return self

    def __next__(self) -> Fix:
        while not self._ready:
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                raise error
            if self._done:
                raise StopIteration
            try:
                chunk = self.source.read()
            except SourceError as err:
                # The device went away: hand out the epoch already received, then the error.
                self._ready.extend(self.assembler.flush())
                self._pending_error = err
                continue
            if not chunk:
                self._ready.extend(self.assembler.flush())
                if not self.is_live:
                    self._done = True
                    self.close()
                continue
            for sentence in self.framer.feed(chunk):
                self._ready.extend(self.assembler.push(sentence))
        return self._ready.popleft()

    def close(self) -> None:
        """Close the source; iteration then ends after the fixes already assembled."""
        self._done = True
        self.source.close()

    def __enter__(self) -> FixStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def iter_fixes(spec: str, baudrate: int | None = None) -> FixStream:
    """Open ``spec`` (see ``open_source``) and iterate over its fixes.

    The source is opened now, not at the first ``next()``, so a missing file or device
    raises SourceError at the call; read errors raise SourceError while iterating.
    """
    return FixStream(open_source(spec, baudrate))
