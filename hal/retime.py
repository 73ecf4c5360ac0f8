"""Move a recorded trace to the present, so it can drive a unit whose wall clock must agree.

Each checksum-valid sentence that carries a UTC time of day (RMC, GGA, GNS, GLL, ZDA, GBS,
GST, GRS) gets that time moved by one constant shift, and RMC and ZDA get the date that
goes with it; the checksum is recomputed. The shift takes the trace's first timed epoch to
the start time given (the last second boundary at or before it, keeping the receiver's
sub-second phase, so the trace's own fractional digits stay as they were). Positions and
every other field are untouched, and so is the pacing: a replay of the retimed lines at the
trace's own pace keeps the sentences' times in step with the clock.

Dates come from the trace's time of day alone: a time that wraps past midnight is the next
day (as in the pacer), so a trace without any date still gets consistent dates, and a trace
that crosses midnight, or is moved across one, gets its date rolled over. Empty time or
date fields stay empty, and lines that are not one checksum-valid sentence (comments,
binary frames, corrupted sentences) pass through unchanged.
"""

from __future__ import annotations

import datetime
import re

from .framer import nmea_checksum
from .nmea_decode import sentence_type
from .nmea_fields import time_of_day

TIME_FIELD = {"RMC": 1, "GGA": 1, "GNS": 1, "GLL": 5, "ZDA": 1, "GBS": 1, "GST": 1, "GRS": 1}
_DAY_MS = 86_400_000
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# One sentence at the end of a line: printable ASCII from '$' to '*HH', then only the line end.
_SENTENCE = re.compile(rb"\$([\x20-\x23\x25-\x7e]*)\*([0-9A-Fa-f]{2})[ \r\n]*\Z")


def _utc(unix_ms: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(milliseconds=unix_ms)


def set_time(body: str, unix_ms: int) -> str:
    """A sentence body (between '$' and '*') with its time of day, and its date in RMC and
    ZDA, set to ``unix_ms``; the time field keeps its own fractional digits."""
    fields = body.split(",")
    kind = sentence_type("$" + body) or ""
    index = TIME_FIELD[kind]
    when = _utc(unix_ms)
    old = fields[index]
    fields[index] = when.strftime("%H%M%S") + old[6:]
    if kind == "RMC" and len(fields) > 9 and fields[9]:
        fields[9] = when.strftime("%d%m%y")
    elif kind == "ZDA" and len(fields) > 4 and fields[2] and fields[3] and fields[4]:
        fields[2:5] = ["%02d" % when.day, "%02d" % when.month, "%04d" % when.year]
    return ",".join(fields)


class Retimer:
    """``line(bytes) -> bytes`` for each line of a trace, in order; ``start_ms`` (Unix ms) is
    where the first timed sentence goes. ``shift_ms``, once known, takes the trace's running
    time of day (ms from midnight of its first day) to Unix ms."""

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.shift_ms: int | None = None
        self._last_ms: int | None = None  # the trace's own time, in ms from its first day

    def rebase(self, start_ms: int) -> None:
        """Take the next timed sentence to ``start_ms`` (after a gap the replay did not sleep on)."""
        self.start_ms, self.shift_ms, self._last_ms = start_ms, None, None

    def _trace_ms(self, tod: int) -> int:
        """Time of day to a running trace time: a wrap past midnight is the next day."""
        if self._last_ms is None:
            return tod
        ms = self._last_ms - self._last_ms % _DAY_MS + tod
        if ms - self._last_ms < -_DAY_MS // 2:
            ms += _DAY_MS
        return ms

    def sentence_time(self, body: str) -> int | None:
        """The new Unix time (ms) of a sentence body, None if it carries no valid time."""
        index = TIME_FIELD.get(sentence_type("$" + body) or "")
        if index is None:
            return None
        fields = body.split(",", index + 1)
        try:
            tod = time_of_day(fields[index]) if len(fields) > index else None
        except ValueError:
            return None
        if tod is None:
            return None
        self._last_ms = ms = self._trace_ms(tod)
        if self.shift_ms is None:
            # the last second boundary at or before start_ms, in the trace's sub-second phase
            self.shift_ms = self.start_ms - (self.start_ms - ms) % 1000 - ms
        return ms + self.shift_ms

    def line(self, line: bytes) -> bytes:
        """The line with its sentence retimed, or unchanged if there is nothing to retime."""
        match = _SENTENCE.search(line)
        if match is None or int(match.group(2), 16) != nmea_checksum(match.group(1)):
            return line
        body = match.group(1).decode("ascii")
        when = self.sentence_time(body)
        if when is None:
            return line
        new = set_time(body, when).encode("ascii")
        return b"%s$%s*%02X%s" % (line[:match.start()], new, nmea_checksum(new), line[match.end(2):])
