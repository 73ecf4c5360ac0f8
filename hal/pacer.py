"""Replay a trace at its original timing (times a speed factor), from the sentences' own times.

gpsd logs carry no timestamps of their own, so the timing comes from the receiver: each
checksum-valid RMC, GGA, GNS, GLL or ZDA gives a UTC time of day. The pacer holds a line
back until ``(t - t0) / speed`` seconds of wall time have passed since the first timed
line, so each epoch's burst of sentences leaves at the second the receiver sent it; untimed
lines (GSV, binary frames) follow the timed line before them at once.

Time that does not move forward sensibly is not slept on: a step back (a spliced log, a
receiver reset) or a jump forward of more than ``max_gap_s`` restarts the schedule at that
line, counted in ``backwards`` and ``jumps``. A time of day that wraps past midnight is
the next day.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from tcu.firmware.errors import UsageError

from .framer import NmeaFramer
from .nmea_decode import sentence_type
from .nmea_fields import time_of_day
from .source_base import CHUNK, Closing
from .trace import TraceFile

_TIMED = {"RMC": 1, "GGA": 1, "GNS": 1, "GLL": 5, "ZDA": 1}  # field index of the time, +1
_DAY_MS = 86_400_000
MAX_GAP_S = 5.0


def sentence_tod(sentence: str) -> int | None:
    """Time of day (ms) a checksum-valid sentence carries, None if it carries none."""
    index = _TIMED.get(sentence_type(sentence) or "")
    if index is None:
        return None
    fields = sentence[:sentence.rfind("*")].split(",")
    try:
        return time_of_day(fields[index].strip()) if len(fields) > index else None
    except ValueError:
        return None


class PacedTrace(Closing):
    """A trace source whose ``read`` sleeps so lines come out at the trace's own pace."""

    is_live = False

    def __init__(self, path: str, speed: float = 1.0, max_gap_s: float = MAX_GAP_S,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not speed > 0:
            raise UsageError("--speed must be a positive factor, not %r" % speed)
        self.path = path
        self.speed = speed
        self.max_gap_ms = max_gap_s * 1000
        self.backwards = 0
        self.jumps = 0
        self._trace = TraceFile(path)
        self._framer = NmeaFramer()
        self._clock = clock
        self._sleep = sleep
        self._lines: deque[bytes] = deque()
        self._partial = b""
        self._origin: tuple[float, int] | None = None  # (wall time, trace ms) of the schedule
        self._last_ms: int | None = None

    def _trace_ms(self, tod: int) -> int:
        """Time of day to a monotonic trace time, stepping days across midnight."""
        if self._last_ms is None:
            return tod
        day = self._last_ms - self._last_ms % _DAY_MS
        ms = day + tod
        if ms - self._last_ms < -_DAY_MS // 2:
            ms += _DAY_MS
        return ms

    def _wait_for(self, tod: int) -> None:
        ms = self._trace_ms(tod)
        last, self._last_ms = self._last_ms, ms
        if self._origin is None or last is None:
            self._origin = (self._clock(), ms)
            return
        if ms < last:
            self.backwards += 1
            self._origin = (self._clock(), ms)
            return
        if ms - last > self.max_gap_ms:
            self.jumps += 1
            self._origin = (self._clock(), ms)
            return
        wall0, ms0 = self._origin
        delay = wall0 + (ms - ms0) / 1000 / self.speed - self._clock()
        if delay > 0:
            self._sleep(delay)

    def _next_line(self) -> bytes:
        while not self._lines:
            block = self._trace.read()
            if not block:
                tail, self._partial = self._partial, b""
                return tail
            data = self._partial + block
            cut = data.rfind(b"\n") + 1
            self._partial = data[cut:]
            if len(self._partial) > CHUNK:  # a long run without a line end: binary data
                cut, self._partial = len(data), b""
            self._lines.extend(data[:cut].splitlines(keepends=True))
        return self._lines.popleft()

    def read(self) -> bytes:
        """The next line of the trace, once its time has come; b"" at end of file."""
        line = self._next_line()
        for sentence in self._framer.feed(line):
            tod = sentence_tod(sentence)
            if tod is not None and (self._last_ms is None or tod != self._last_ms % _DAY_MS):
                self._wait_for(tod)
        return line

    def close(self) -> None:
        self._trace.close()
