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

from .framer import DEFAULT_MAX_LEN, nmea_checksum
from .nmea_decode import GGA_FIX_QUALITIES
from .nmea_fields import _DATES, _MINUTES, _SECONDS, FAA_FIX_MODES, _Cache, time_of_day  # _DATES: rmc_date, cached
from .scan import _HEX_VALUE

_STATUS = re.compile(
    rb"\$((\w\w)(RMC|GGA|GNS),([\x20-\x23\x25-\x29\x2b-\x7e]{0,%d}))\*([0-9A-Fa-f]{2}) *(?=[\r\n])"
    % (DEFAULT_MAX_LEN - 12))
_GGA_FIX_QUALITIES = frozenset(q.encode("ascii") for q in GGA_FIX_QUALITIES)
_FAA_FIX_MODES = frozenset(ord(c) for c in FAA_FIX_MODES)  # bytes iterate as ints
_DAY_MS = 86_400_000
# The time field as minute + second, each from a cache that validates (as nmea_decode's _TOD).
_MINUTE_MS: _Cache[bytes, int] = _Cache(lambda hhmm: _MINUTES[hhmm.decode("ascii")], 1440)
_SECOND_MS: _Cache[bytes, int] = _Cache(lambda ss: _SECONDS[ss.decode("ascii")], 1024)
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
        self._buf = b""  # bytes received: [:_pos] scanned, [_pos:] the unterminated tail
        self._pos = 0
        # (start of its sentence in _buf, its time of day and time field) for each heartbeat
        # of the last feed: where to rewind to when a consumer switches to the full path.
        self._marks: list[tuple[int, int | None, bytes]] = []

    def feed(self, data: bytes) -> list[Heartbeat]:
        """The heartbeats of the complete lines that ``data`` completes, in one pass.

        A consumer that switches to the full path after some of them hands the scanner the
        number it did not use: ``take_pending(unused)`` then returns every byte after the
        sentence of the last heartbeat used, as if the scan had stopped there.
        """
        buf = self._buf[self._pos:] + data if self._pos < len(self._buf) else bytes(data)
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
        if len(buf) - cut > DEFAULT_MAX_LEN + 1:  # an unterminated run: keep its end only
            buf = buf[:cut] + buf[-DEFAULT_MAX_LEN - 1:]
        self._buf, self._pos = buf, cut
        return self._scan(buf, cut)

    def _scan(self, buf: bytes, cut: int) -> list[Heartbeat]:
        """The heartbeats of ``buf[:cut]``; the scanner's state is kept in locals meanwhile
        (a heartbeat costs a few microseconds of Python: attribute traffic is a good part)."""
        beats: list[Heartbeat] = []
        tod_text, last_tod, ref_date = self._tod_text, self._tod, self._ref_date
        marks = self._marks = []
        repeats = bad = sentences = 0
        fix = self.has_fix
        talkers, dates, hex_value = self._talkers, _BYTE_DATES, _HEX_VALUE
        for m in _STATUS.finditer(buf, 0, cut):
            start = m.start(4)  # the body, after "RMC,": compared in place, no copy
            if buf.startswith(tod_text, start) and (buf[start - 4] != 82 or ref_date is not None):
                # The same second as the last sentence that made a heartbeat (an epoch's
                # GGA after its RMC): nothing new to learn, skip the checksum and the split.
                # Not an RMC (82 is "R") while the date is unknown: receivers that send GGA
                # first (quectel-l76k) would otherwise never date a heartbeat.
                repeats += 1
                continue
            checked, talker, kind, body, digits = m.groups()
            if hex_value[digits] != nmea_checksum(checked):
                bad += 1
                continue
            fields = body.split(b",", 9)
            tod: int | None
            try:
                text = fields[0]
                try:
                    tod = _MINUTE_MS[text[:4]] + _SECOND_MS[text[4:]] if text else None
                except ValueError:  # empty, or an unusual form (spaces): the careful way
                    tod = time_of_day(text.decode("ascii").strip())
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
                bad += 1
                continue
            sentences += 1
            talkers.add(talker)
            if tod is None:
                continue
            if date is not None:
                if date != ref_date:
                    self.reference = (date, tod)
                    ref_date = date
                else:
                    self._ref_tod = tod
            if tod != last_tod:
                last_tod, tod_text = tod, body[:len(fields[0]) + 1]
                marks.append((m.start(), tod, tod_text))
                beats.append(Heartbeat(self._unix_ms(tod) if ref_date is not None else None, tod, fix))
        self._tod, self._tod_text, self.has_fix = last_tod, tod_text, fix
        self.repeats += repeats
        self.bad += bad
        self.sentences += sentences
        return beats

    def _unix_ms(self, tod: int) -> int:
        """Unix time of a time of day, dated by the reference (across midnight either way)."""
        days = self._ref_days
        if tod - self._ref_tod < -_DAY_MS // 2:
            days += 1
        elif tod - self._ref_tod > _DAY_MS // 2:
            days -= 1
        return days * _DAY_MS + tod

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

    def take_pending(self, unused: int = 0) -> tuple[bytes, bool]:
        """The bytes for the full path taking over, and whether they start an epoch; the
        scanner forgets them.

        ``unused``: how many of the last feed's heartbeats the consumer did not take. The
        bytes start at the sentence of the last heartbeat taken, the first status sentence
        of its second: the full path decodes that whole epoch (the position that a trigger
        during the previous second waits for), not only the seconds after it. Without a
        heartbeat in the last feed they are the unscanned tail, in mid-epoch.
        """
        taken = len(self._marks) - unused
        if taken > 0:
            pos, self._tod, self._tod_text = self._marks[taken - 1]
        else:
            pos = self._pos
        pending = self._buf[pos:]
        self._buf, self._pos, self._marks = b"", 0, []
        return pending, taken > 0

    def give_pending(self, data: bytes) -> None:
        """A sentence in progress handed back by the full path going idle."""
        self._buf, self._pos, self._marks = bytes(data), 0, []
