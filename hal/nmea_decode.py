"""Decode one checksum-valid NMEA sentence into a flat, validated ``Report``.

The fields a fix needs are split and converted by hand, in integer arithmetic: no pynmea2 on
the hot path (bench/decode_throughput.py: several times faster than ``pynmea2.parse`` alone),
and none of its traps (``latitude`` is 0.0 for empty fields, a field that fails conversion
comes back as the raw string). Every conversion is strict and raises ``ValueError`` on
anything odd; the assembler counts and skips such sentences. Values are exact: decimal text
is scaled with integers and rounded half to even, so the result is bit for bit what the
previous pynmea2 + ``Fraction`` decoder (``tcu.hal.nmea_reference``, the test oracle) gives.

Speed (bench/decode_throughput.py) comes from not converting the same text twice: an
epoch's sentences repeat its time and position, and HDOP, altitude, speed or a whole GSA
repeat between epochs, so field conversions go through small text -> value caches
(``_Cache``, in ``nmea_fields``) and the full path (``fast_epochs``) parses the scanner's
checksummed bodies itself.

Sentence-level acceptance follows ``pynmea2.parse(check=True)`` too: a talker of two word
characters, a three-letter type, and no ``*`` inside the data.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Literal

from .nmea_fields import (
    _CENTI,
    _COURSES,
    _DATES,
    _HDOPS,
    _KMHS,
    _KNOTS,
    _TOD,
    FAA_FIX_MODES,
    _Cache,
    _faa_ok,
    position,
    zda_date,
)

# Sentence types that carry something a Fix needs; everything else is ignored cheaply.
USED_TYPES = frozenset({"RMC", "GGA", "GNS", "GLL", "VTG", "GSA", "ZDA"})

# GGA quality 1..6 are real (if possibly degraded) fixes; 0 is none, 7 is a position typed
# in by hand and 8 is the receiver's simulator: neither locates the car.
GGA_FIX_QUALITIES = frozenset("123456")

_TALKER = re.compile(r"[$]\w\w[A-Z]{3},")


class Report:
    """What one sentence says about its epoch; None means "not stated by this sentence".

    ``fix`` is True when the sentence states a valid position, False when it explicitly
    states there is none (RMC status V, GGA quality 0, ...), None when it says nothing.
    """

    __slots__ = (
        "kind", "tod_ms", "date", "fix", "lat_e7", "lon_e7", "alt_cm", "speed_mms",
        "course_cdeg", "sats", "hdop_c", "gsa_mode",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tod_ms: int | None = None  # UTC time of day, milliseconds
        self.date: datetime.date | None = None
        self.fix: bool | None = None
        self.lat_e7: int | None = None
        self.lon_e7: int | None = None
        self.alt_cm: int | None = None
        self.speed_mms: int | None = None
        self.course_cdeg: int | None = None
        self.sats: int | None = None
        self.hdop_c: int | None = None
        self.gsa_mode: int | None = None


def _position(rep: Report, lat: str, ns: str, lon: str, ew: str) -> None:
    """Set the position, or veto the fix (empty fields, (0, 0)); ValueError if malformed."""
    pos = position(lat, ns, lon, ew)
    if pos is None:
        rep.fix = False  # no (or a null-island placeholder) position: never a fix
    else:
        rep.lat_e7, rep.lon_e7 = pos


def _rmc(f: list[str], rep: Report) -> None:
    rep.tod_ms = _TOD[f[0]]
    rep.date = _DATES[f[8]]
    rep.fix = f[1] == "A" and _faa_ok(f[11])
    if rep.fix:
        _position(rep, f[2], f[3], f[4], f[5])
        rep.speed_mms = _KNOTS[f[6]]
        rep.course_cdeg = _COURSES[f[7]]


def _gga(f: list[str], rep: Report) -> None:
    rep.tod_ms = _TOD[f[0]]
    rep.fix = f[5] in GGA_FIX_QUALITIES
    if rep.fix:
        _position(rep, f[1], f[2], f[3], f[4])
        if f[9] in ("", "M"):
            rep.alt_cm = _CENTI[f[8]]
        rep.sats = int(f[6]) if f[6].isdigit() else None
        rep.hdop_c = _HDOPS[f[7]]


def _gns(f: list[str], rep: Report) -> None:
    rep.tod_ms = _TOD[f[0]]
    rep.fix = any(c in FAA_FIX_MODES for c in f[5])
    if rep.fix:
        _position(rep, f[1], f[2], f[3], f[4])
        rep.alt_cm = _CENTI[f[8]]
        rep.sats = int(f[6]) if f[6].isdigit() else None
        rep.hdop_c = _HDOPS[f[7]]


def _gll(f: list[str], rep: Report) -> None:
    rep.tod_ms = _TOD[f[4]]
    rep.fix = f[5] == "A" and _faa_ok(f[6])
    if rep.fix:
        _position(rep, f[0], f[1], f[2], f[3])


def _vtg(f: list[str], rep: Report) -> None:
    if not _faa_ok(f[8]):
        return
    rep.course_cdeg = _COURSES[f[0]]
    rep.speed_mms = _KNOTS[f[4]]
    if rep.speed_mms is None:
        rep.speed_mms = _KMHS[f[6]]


def _gsa(f: list[str], rep: Report) -> None:
    if f[1] in ("1", "2", "3"):
        rep.gsa_mode = int(f[1])
    rep.hdop_c = _HDOPS[f[15]]


def _zda(f: list[str], rep: Report) -> None:
    rep.tod_ms = _TOD[f[0]]
    if rep.tod_ms is not None:
        rep.date = zda_date(f)


_DECODERS = {
    "RMC": (_rmc, 12), "GGA": (_gga, 10), "GNS": (_gns, 9), "GLL": (_gll, 7),
    "VTG": (_vtg, 9), "GSA": (_gsa, 16), "ZDA": (_zda, 4),
}


def sentence_type(sentence: str) -> str | None:
    """The 3-letter type of a talker sentence ("$GNRMC,..." -> "RMC"); None if proprietary."""
    if len(sentence) < 7 or sentence[1] == "P" or sentence[6] != ",":
        return None
    return sentence[3:6]


_Head = tuple[str, Callable[[list[str], Report], None], int]


def _head(head: str) -> _Head | Literal[False] | None:
    """What the first 7 characters say: (type, decoder, width), None if unused, False if bad."""
    kind = sentence_type(head)
    if kind not in USED_TYPES:
        return None
    if not _TALKER.match(head):
        return False
    decoder, width = _DECODERS[kind]
    return kind, decoder, width


_HEADS: _Cache[str, _Head | Literal[False] | None] = _Cache(_head)  # a few talker+type pairs
_BODY_HEADS: _Cache[str, _Head | Literal[False] | None] = _Cache(lambda head: _head("$" + head))


def decode(sentence: str) -> Report | None:
    """Decode a checksum-valid sentence; None if its type is not used for fixes.

    Raises ValueError when the sentence is of a used type but its content is malformed.
    Missing trailing fields read as empty. The Report of a GSA or VTG may be shared with
    an earlier identical sentence's: read it, do not change it.
    """
    head = _HEADS[sentence[:7]]
    if head is None:
        return None
    star = sentence.rfind("*")  # after the head if the head is good: it has no "*"
    if head is False or star < 0:
        raise ValueError("not a talker sentence: %r" % sentence)
    return decode_body(sentence[1:star])


def decode_body(body: str) -> Report | None:
    """``decode`` of the part between ``$`` and ``*`` (what the scanner checksums)."""
    head = _BODY_HEADS[body[:6]]
    if head is None:
        return None
    if head is False:
        raise ValueError("not a talker sentence: %r" % body)
    kind, decoder, width = head
    if kind == "GSA" or kind == "VTG":
        # Untimed: the same text often comes epoch after epoch (86% of the GSAs of the
        # gpsd logs), so its Report is shared. Reports are read, never changed, downstream.
        rep = _UNTIMED.get(body)
        if rep is None:
            rep = _decode_fields(kind, decoder, width, body)
            if len(_UNTIMED) >= 64:
                _UNTIMED.clear()
            _UNTIMED[body] = rep
        return rep
    return _decode_fields(kind, decoder, width, body)


_UNTIMED: dict[str, Report] = {}


def _decode_fields(kind: str, decoder: Callable[[list[str], Report], None], width: int,
                   body: str) -> Report:
    data = body[6:]
    if "*" in data:
        raise ValueError("'*' inside the data: %r" % body)
    fields = data.split(",")
    if " " in data:
        fields = [s.strip() for s in fields]
    if len(fields) < width:
        fields += [""] * width
    rep = Report(kind)
    decoder(fields, rep)
    return rep
