"""Hardware abstraction for the GNSS receiver: bytes in, validated ``Fix`` objects out.

``iter_fixes`` is the one call the rest of the emulator needs; the pieces (source, framer,
epoch assembler, idle scanner) are exposed for tests and tools that want counters or
partial pipelines.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from types import TracebackType

from tcu.firmware.errors import SourceError
from tcu.firmware.fix import Fix

from .fast_epochs import FastAssembler
from .framer import NmeaFramer
from .gpsd import GpsdNmeaSource, GpsdStream, parse_url
from .idle import Heartbeat, IdleScanner
from .nmea import EpochAssembler
from .nmea_decode import USED_TYPES, decode
from .scan import SentenceScanner
from .sources import Source, open_source
from .ubx import UbxDecoder, UbxFramer

__all__ = ["EpochAssembler", "FixStream", "GnssStream", "GpsdStream", "Heartbeat", "NmeaFramer", "iter_fixes",
           "open_source"]


class FixStream:
    """Iterator of the fixes of one source; also a context manager that closes it.

    A trace ends at end of file, where the last epoch is flushed. A live source never ends
    by itself; there, a read timeout (the receiver went quiet after its burst of sentences)
    also completes the epoch in progress, so a fix is not held back until the next second.

    ``positions_needed`` (default True) selects the path. Set it to False while no service
    needs a position: the bytes then go to the ``IdleScanner`` (receiver alive, fix or not,
    time; no coordinates parsed), the epoch in progress and any fix not yet handed out are
    dropped, and ``items()`` yields a ``Heartbeat`` per receiver second instead of fixes.
    Set it back to True on a heartbeat and the full path takes over at that heartbeat's
    sentence: its epoch comes out as the first Fix (heartbeats of the same chunk not handed
    out yet are dropped, their bytes rescanned). Set at any other time, the full path
    starts mid-epoch and skips it: the first fix is that of the next whole epoch.
    Iterating the stream itself (``next()``) yields fixes only, so use ``items()`` when
    switching.
    """

    def __init__(self, source: Source, positions_needed: bool = True) -> None:
        self.source = source
        self.is_live = source.is_live
        self.framer = SentenceScanner(USED_TYPES)
        self.assembler = FastAssembler()
        # A live receiver's epoch is closed on its learnt last sentence, not a second later.
        self.assembler.close_early = source.is_live
        self.idle = IdleScanner()
        self.ubx_framer = UbxFramer()  # u-blox NAV-PVT frames on the same stream (hal/ubx.py)
        self.ubx = UbxDecoder()
        self._ubx_marks: list[bytes] = []  # the NAV-PVT frames of the last idle chunk's UBX heartbeats
        self._recent: deque[int] = deque(maxlen=8)  # times of the last fixes: NMEA and UBX say one epoch twice
        self.bytes_in = 0
        self.head = b""  # the first bytes read, for the summary of an empty result (hal/summary.py)
        self.fixes_made = 0
        self.heartbeats = 0
        self.heartbeats_with_fix = 0
        self.heartbeats_dated = 0
        self.dropped = 0  # fixes assembled but dropped unread when positions stopped being needed
        self._positions_needed = positions_needed
        self._ready: deque[Fix | Heartbeat] = deque()
        self._done = False
        self._pending_error: SourceError | None = None

    @property
    def positions_needed(self) -> bool:
        return self._positions_needed

    @positions_needed.setter
    def positions_needed(self, needed: bool) -> None:
        if needed == self._positions_needed:
            return
        self._positions_needed = needed
        if needed:
            if self.idle.reference is not None:
                self.assembler.set_reference(*self.idle.reference)
            # Heartbeats of the last chunk not handed out yet are dropped: the full path
            # takes over from the sentence of the last one handed out, its epoch whole.
            unused = len(self._ready)
            self._ready.clear()
            ubx_unused = min(unused, len(self._ubx_marks))
            ubx_frames = self._ubx_marks[max(0, len(self._ubx_marks) - ubx_unused - 1):]
            self._ubx_marks = []
            pending, whole_epoch = self.idle.take_pending(unused)
            self._emit(self._ubx_fixes(ubx_frames))  # the epoch of the UBX heartbeat taken
            if whole_epoch:
                self.assembler.reset()
            else:
                self.assembler.resume()  # mid-epoch: the first whole epoch makes the first fix
            self._decode(pending)  # now: the rest of the epoch may have arrived already
        else:
            if self.assembler.reference is not None:
                self.idle.reference = self.assembler.reference
            self.assembler.reset()
            self.idle.give_pending(self.framer.take_pending())
            kept = [item for item in self._ready if isinstance(item, Heartbeat)]
            self.dropped += len(self._ready) - len(kept)
            self._ready = deque(kept)

    def __iter__(self) -> FixStream:
        return self

    def __next__(self) -> Fix:
        while True:
            item = self._next_item()
            if isinstance(item, Fix):
                return item

    def items(self) -> Iterator[Fix | Heartbeat]:
        """Fixes while positions are needed, Heartbeats while they are not."""
        while True:
            ready = self._ready
            while ready:
                yield ready.popleft()
                ready = self._ready  # the setter may have replaced it
            try:
                self._fill()
            except StopIteration:
                return

    def _next_item(self) -> Fix | Heartbeat:
        while not self._ready:
            self._fill()
        return self._ready.popleft()

    def _fill(self) -> None:
        """Read one chunk into ``_ready``; raise StopIteration at the end, SourceError."""
        while True:
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                raise error
            if self._done:
                raise StopIteration
            try:
                chunk = self.source.read()
            except SourceError as err:
                # The device went away: hand out the epoch already received, then the error.
                self._flush()
                self._pending_error = err
                if self._ready:
                    return
                continue
            if not chunk:
                self._flush()
                if not self.is_live or getattr(self.source, "ended", False):
                    self._done = True
                    self.close()
                if self._ready:
                    return
                continue
            if not self.head:
                self.head = chunk[:4096]
            self.bytes_in += len(chunk)
            if self._positions_needed:
                self._decode(chunk)
            else:
                self._idle(chunk)
            return

    def _idle(self, chunk: bytes) -> None:
        """The idle path: heartbeats from NMEA status sentences, else from UBX NAV-PVT."""
        beats = self.idle.feed(chunk)
        frames = self.ubx_framer.feed(chunk) if b"\xb5" in chunk or self.ubx_framer.active else []
        self._ubx_marks = []
        if not beats and frames and not self.idle.sentences:  # a UBX-only receiver
            for frame in frames:
                beat = self.ubx.heartbeat(frame)
                if beat is not None:
                    beats.append(beat)
                    self._ubx_marks.append(frame)
        self.heartbeats += len(beats)
        self.heartbeats_with_fix += sum(1 for beat in beats if beat.has_fix)
        self.heartbeats_dated += sum(1 for beat in beats if beat.time_ms is not None)
        self._ready.extend(beats)

    def _ubx_fixes(self, frames: list[bytes]) -> list[Fix]:
        out = []
        for frame in frames:
            fix = self.ubx.fix(frame)
            if fix is not None:
                out.append(fix)
        return out

    def _emit(self, fixes: list[Fix]) -> None:
        """Hand fixes out, one per epoch: a receiver sending NMEA and UBX says each twice."""
        if not self.ubx_framer.frames:  # NMEA only so far: no check, but the times are remembered
            self.fixes_made += len(fixes)
            self._ready.extend(fixes)
            if fixes:
                self._recent.extend(fix.time_ms for fix in fixes[-8:])
            return
        recent = self._recent
        for fix in fixes:
            if fix.time_ms in recent:
                self.ubx.counts["same_epoch_twice"] = self.ubx.counts.get("same_epoch_twice", 0) + 1
                continue
            recent.append(fix.time_ms)
            self.fixes_made += 1
            self._ready.append(fix)

    def _decode(self, chunk: bytes) -> None:
        if self.assembler.decoder is decode:  # the fast path: scanner candidates to fixes
            self._emit(self.assembler.push_chunk(self.framer, chunk))
        else:
            self._emit(self.assembler.push_all(self.framer.feed(chunk)))
        if b"\xb5" in chunk or self.ubx_framer.active:
            self._emit(self._ubx_fixes(self.ubx_framer.feed(chunk)))

    def _flush(self) -> None:
        """End of the stream, or a live line fallen silent: the epoch in progress is complete."""
        if self._positions_needed:
            if self.is_live:
                self.assembler.cycle.silence()  # what came last before the silence ends the cycle
            self._emit(self.assembler.flush())

    def close(self) -> None:
        """Close the source; iteration then ends after the fixes already assembled."""
        self._done = True
        self.source.close()

    def __enter__(self) -> FixStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


GnssStream = FixStream | GpsdStream


def iter_fixes(spec: str, baudrate: int | None = None, positions_needed: bool = True, *,
               speed: float | None = None, reconnect: bool = False) -> GnssStream:
    """Open ``spec`` (see ``open_source``) and iterate over its fixes.

    The source is opened now, not at the first ``next()``, so a missing file or device
    raises SourceError at the call; read errors raise SourceError while iterating (unless
    ``reconnect``, where a device that goes away is reopened when it comes back).
    ``gpsd://HOST[:PORT][/DEVICE]`` reads a running gpsd's reports (hal/gpsd.py), with
    ``?nmea`` its raw NMEA through the HAL's own decoder; ``reconnect`` outlives gpsd restarts.
    """
    if spec.startswith("gpsd://"):
        if parse_url(spec)[3]:
            return FixStream(GpsdNmeaSource(spec, reconnect=reconnect), positions_needed)
        return GpsdStream(spec, positions_needed, reconnect=reconnect)
    return FixStream(open_source(spec, baudrate, speed=speed, reconnect=reconnect), positions_needed)
