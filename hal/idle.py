"""The idle path: is the receiver alive, does it have a fix, what time is it. No positions.

While no service needs a position, decoding one is wasted work and a privacy risk (a
position in memory is a position that can leak). ``IdleScanner`` looks at the raw bytes in
bulk with one regular expression for the status-carrying sentences (RMC, GGA, GNS of any
talker), verifies each one's checksum, and reads only its time, its fix flag and (RMC) its
date. Latitude and longitude are never parsed; nothing else is framed or decoded. Only the
first status sentence of each second is decoded (its checksum verified, so a corrupted line
never sets the status); the others of that second (a GGA after its RMC) are counted in
``repeats`` and skipped, and other sentences are not looked at (the full framer counts
rejects by cause, the idle path does not).

The scanner keeps the unterminated tail of the stream (one sentence at most) so that the
full path can take over mid-stream without losing a sentence (``take_pending``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator

from .framer import DEFAULT_MAX_LEN, nmea_checksum
from .nmea_decode import _DATES, FAA_FIX_MODES, GGA_FIX_QUALITIES, _Cache, time_of_day  # _DATES: rmc_date, cached
from .scan import _HEX_VALUE

# The time field is also captured as hhmm, ss, fraction when it has the usual form
# (a lookahead, so the body still starts at the time); any other form is parsed the slow way.
_STATUS = re.compile(
    rb"\$((\w\w)(RMC|GGA|GNS),"
    rb"(?=(?:((?:[01][0-9]|2[0-3])[0-5][0-9])([0-5][0-9]|60)(?:[.]([0-9]*))?,)?)"
    rb"([\x20-\x23\x25-\x29\x2b-\x7e]{0,%d}))\*([0-9A-Fa-f]{2}) *(?=[\r\n])"
    % (DEFAULT_MAX_LEN - 12))
_GGA_FIX_QUALITIES = frozenset(q.encode("ascii") for q in GGA_FIX_QUALITIES)
_FAA_FIX_MODES = frozenset(ord(c) for c in FAA_FIX_MODES)  # bytes iterate as ints
_DAY_MS = 86_400_000
_MINUTE_MS: _Cache[bytes, int] = _Cache(lambda hhmm: (int(hhmm[:2]) * 60 + int(hhmm[2:])) * 60_000)  # b"hhmm"
_BYTE_DATES: _Cache[bytes, datetime.date | None] = _Cache(lambda text: _DATES[text.decode("ascii").strip()])
_UNIX_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


class Heartbeat:
    """The receiver's state at a new time of day, as seen without decoding positions.

    ``time_ms`` is Unix milliseconds when the date is known (else None); ``has_fix`` is
    what the sentence says (RMC status, GGA quality, GNS mode).
    """

    __slots__ = ("time_ms", "tod_ms", "has_fix")

    def __init__(self, time_ms: int | None, tod_ms: int, has_fix: bool) -> None:
        self.time_ms = time_ms
        self.tod_ms = tod_ms
        self.has_fix = has_fix

    def __repr__(self) -> str:
        return "Heartbeat(%r, has_fix=%r)" % (self.time_ms, self.has_fix)


class IdleScanner:
    """Feed raw bytes; get a Heartbeat per new time of day. Counts in ``sentences``."""

    def __init__(self) -> None:
        self.sentences = 0  # checksum-valid status sentences seen
        self.bad = 0  # status sentences with a wrong checksum or a malformed time/date
        self._talkers: set[bytes] = set()
        self.has_fix: bool | None = None
        self._ref_date: datetime.date | None = None
        self._ref_tod = 0
        self._ref_days = 0
        self.repeats = 0  # further status sentences of a second already reported, not checked
        self._tod: int | None = None
        self._tod_text = b"\x00"  # the time field (and comma) of the last heartbeat
        self._buf = b""  # bytes received; [_pos:_cut] complete lines not scanned yet
        self._pos = 0
        self._cut = 0
        # The scan of _buf in progress: FixStream resumes it directly while it is idle.
        self.beats: Iterator[Heartbeat] | None = None

    def feed(self, data: bytes) -> list[Heartbeat]:
        """Scan ``data`` after what is left of earlier calls; stop after one heartbeat.

        At most one Heartbeat is returned, so that a consumer switching to the full path on
        it gets every byte after that sentence (``take_pending``); ``backlog`` says whether
        complete lines are still waiting, for ``feed(b"")``. The scan of a chunk goes on
        where the last heartbeat stopped it (one ``finditer`` per chunk, not per heartbeat).
        """
        if data:
            buf = self._buf[self._pos:] + data if self._pos < len(self._buf) else bytes(data)
            cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
            if len(buf) - cut > DEFAULT_MAX_LEN + 1:  # an unterminated run: keep its end only
                buf = buf[:cut] + buf[-DEFAULT_MAX_LEN - 1:]
            self._buf, self._pos, self._cut = buf, 0, cut
            self.beats = self._scan(buf, cut)
        elif self.beats is None:
            return []
        for beat in self.beats:
            return [beat]
        self.beats = None
        return []

    def _scan(self, buf: bytes, cut: int) -> Iterator[Heartbeat]:
        """The heartbeats of ``buf[:cut]``, one at a time, ``_pos`` just after each one's line."""
        checksum, dates = nmea_checksum, _BYTE_DATES
        for m in _STATUS.finditer(buf, 0, cut):
            start = m.start(7)  # the body, after "RMC,": compared in place, no copy
            if buf.startswith(self._tod_text, start) and (buf[start - 4] != 82 or self._ref_date is not None):
                # The same second as the last sentence that made a heartbeat (an epoch's
                # GGA after its RMC): nothing new to learn, skip the checksum and the split.
                # Not an RMC (82 is "R") while the date is unknown: receivers that send GGA
                # first (quectel-l76k) would otherwise never date a heartbeat.
                self.repeats += 1
                continue
            checked, talker, kind, hhmm, ss, frac, body, digits = m.groups()
            if _HEX_VALUE[digits] != checksum(checked):
                self.bad += 1
                continue
            fields = body.split(b",", 9)
            tod: int | None
            try:
                if hhmm is not None:
                    tod = _MINUTE_MS[hhmm] + int(ss) * 1000
                    if frac:
                        tod += int((frac + b"000")[:3])
                else:
                    tod = time_of_day(fields[0].decode("ascii").strip())
                if kind == b"RMC":
                    fix = len(fields) > 1 and fields[1] == b"A"
                    date = dates[fields[8]] if fix and len(fields) > 8 else None
                elif kind == b"GGA":
                    fix = len(fields) > 5 and fields[5] in _GGA_FIX_QUALITIES
                    date = None
                else:
                    fix = len(fields) > 5 and any(c in _FAA_FIX_MODES for c in fields[5])
                    date = None
            except ValueError:
                self.bad += 1
                continue
            self.sentences += 1
            self._talkers.add(talker)
            self.has_fix = fix
            if tod is None:
                continue
            if date is not None and (self._ref_date is None or self._ref_date != date):
                self.reference = (date, tod)
            elif date is not None:
                self._ref_tod = tod
            if tod != self._tod:
                self._tod = tod
                self._tod_text = body[:len(fields[0]) + 1]
                self._pos = m.end()
                if self._ref_date is None:
                    yield Heartbeat(None, tod, fix)
                    continue
                days = self._ref_days
                if tod - self._ref_tod < -_DAY_MS // 2:
                    days += 1
                elif tod - self._ref_tod > _DAY_MS // 2:
                    days -= 1
                yield Heartbeat(days * _DAY_MS + tod, tod, fix)
        self._pos = cut


    @property
    def backlog(self) -> bool:
        """Complete lines received but not scanned yet (after the last heartbeat)."""
        return self._pos < self._cut

    @property
    def talkers(self) -> set[str]:
        """Talker IDs of the status sentences seen (GP, GN, GL, ...)."""
        return {t.decode("ascii") for t in self._talkers}

    @property
    def reference(self) -> tuple[datetime.date, int] | None:
        """The last known (date, time of day): dates the heartbeats of sentences without one."""
        return None if self._ref_date is None else (self._ref_date, self._ref_tod)

    @reference.setter
    def reference(self, value: tuple[datetime.date, int] | None) -> None:
        if value is None:
            self._ref_date = None
            return
        self._ref_date, self._ref_tod = value
        self._ref_days = self._ref_date.toordinal() - _UNIX_EPOCH_ORDINAL

    def take_pending(self) -> bytes:
        """The bytes not scanned yet, for the full path taking over; the scanner forgets them."""
        pending = self._buf[self._pos:]
        self._buf, self._pos, self._cut, self.beats = b"", 0, 0, None
        return pending

    def give_pending(self, data: bytes) -> None:
        """A sentence in progress handed back by the full path going idle."""
        self._buf, self._pos, self._cut, self.beats = bytes(data), 0, 0, None
