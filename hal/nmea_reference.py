"""The previous, pynmea2-based sentence decoder, kept as the oracle for the fast one.

``tcu.hal.nmea_decode`` parses the few fields a fix needs by hand; this module does the same
through ``pynmea2.parse(check=True)`` and exact ``Fraction`` arithmetic, as the HAL did first.
bench/decode_throughput.py and tests/test_hal_decode.py check that both give identical
fixes on every trace (``EpochAssembler(decoder=decode)``). Not used on the hot path.
"""

from __future__ import annotations

import datetime
import re
from fractions import Fraction

import pynmea2

# The pure helpers are shared; everything that converts field values is this module's own.
from .nmea_decode import USED_TYPES, Report, sentence_type
from .nmea_fields import _faa_ok, zda_date

# GGA quality 1..6 are real (if possibly degraded) fixes; 0 is none, 7 is a position typed
# in by hand and 8 is the receiver's simulator: neither locates the car.
GGA_FIX_QUALITIES = frozenset("123456")
# FAA / GNS mode letters that mean a computed position (N none, M manual, S simulator).
FAA_FIX_MODES = frozenset("ADPRFE")

_TIME = re.compile(r"^(\d\d)(\d\d)(\d\d)(?:\.(\d*))?$")
_LATLON = re.compile(r"^(\d{1,3})(\d\d(?:\.\d*)?)$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_DATE = re.compile(r"^(\d\d)(\d\d)(\d\d)$")
_KNOT_MM_S = Fraction(1852000, 3600)  # 1 kn = 1852 m/h
_KMH_MM_S = Fraction(1000000, 3600)


def number(text: str) -> Fraction | None:
    """Exact decimal number, None for an empty field; ValueError for anything else."""
    if not text:
        return None
    if not _NUMBER.match(text):
        raise ValueError("not a number: %r" % text)
    return Fraction(text)


def scaled(text: str, scale: int | Fraction) -> int | None:
    """``round(number(text) * scale)``, None for an empty field."""
    value = number(text)
    return None if value is None else round(value * scale)


def time_of_day(text: str) -> int | None:
    """hhmmss[.sss] to milliseconds since midnight (sub-millisecond digits truncated).

    None for an empty field: receivers without a fix often leave the time empty.
    """
    if not text:
        return None
    m = _TIME.match(text)
    if not m:
        raise ValueError("bad time: %r" % text)
    hh, mm, ss = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if hh > 23 or mm > 59 or ss > 60:  # 60: leap second
        raise ValueError("bad time: %r" % text)
    ms = int(((m.group(4) or "") + "000")[:3])
    return ((hh * 60 + mm) * 60 + ss) * 1000 + ms


def angle_e7(text: str, hemi: str, pos: str, neg: str, limit: int) -> int | None:
    """(d)ddmm.mmmm + hemisphere to degrees * 1e7; None if both fields are empty."""
    if not text and not hemi:
        return None
    m = _LATLON.match(text)
    if not m or hemi not in (pos, neg):
        raise ValueError("bad coordinate: %r %r" % (text, hemi))
    minutes = Fraction(m.group(2))
    if minutes >= 60:
        raise ValueError("bad minutes: %r" % text)
    value = round((int(m.group(1)) + minutes / 60) * 10_000_000)
    if value > limit * 10_000_000:
        raise ValueError("coordinate out of range: %r" % text)
    return -value if hemi == neg else value


def _position(rep: Report, lat: str, ns: str, lon: str, ew: str) -> None:
    lat_e7 = angle_e7(lat, ns, "N", "S", 90)
    lon_e7 = angle_e7(lon, ew, "E", "W", 180)
    if lat_e7 is None or lon_e7 is None or (lat_e7 == 0 and lon_e7 == 0):
        rep.fix = False  # no (or a null-island placeholder) position: never a fix
    else:
        rep.lat_e7, rep.lon_e7 = lat_e7, lon_e7


def _course(text: str) -> int | None:
    value = scaled(text, 100)
    return None if value is None or value < 0 else value % 36000


def _speed(text: str, scale: Fraction) -> int | None:
    value = scaled(text, scale)
    return None if value is None or value < 0 else value


def _rmc(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[0])
    if f[8]:
        m = _DATE.match(f[8])
        if not m:
            raise ValueError("bad date: %r" % f[8])
        yy = int(m.group(3))
        # Two-digit year: GPS time starts in 1980, so 80..99 are 19xx.
        rep.date = datetime.date(1900 + yy if yy >= 80 else 2000 + yy,
                                 int(m.group(2)), int(m.group(1)))
    rep.fix = f[1] == "A" and _faa_ok(f[11])
    if rep.fix:
        _position(rep, f[2], f[3], f[4], f[5])
        rep.speed_mms = _speed(f[6], _KNOT_MM_S)
        rep.course_cdeg = _course(f[7])


def _gga(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[0])
    rep.fix = f[5] in GGA_FIX_QUALITIES
    if rep.fix:
        _position(rep, f[1], f[2], f[3], f[4])
        if f[9] in ("", "M"):
            rep.alt_cm = scaled(f[8], 100)
        rep.sats = int(f[6]) if f[6].isdigit() else None
        rep.hdop_c = scaled(f[7], 100)


def _gns(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[0])
    rep.fix = any(c in FAA_FIX_MODES for c in f[5])
    if rep.fix:
        _position(rep, f[1], f[2], f[3], f[4])
        rep.alt_cm = scaled(f[8], 100)
        rep.sats = int(f[6]) if f[6].isdigit() else None
        rep.hdop_c = scaled(f[7], 100)


def _gll(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[4])
    rep.fix = f[5] == "A" and _faa_ok(f[6])
    if rep.fix:
        _position(rep, f[0], f[1], f[2], f[3])


def _vtg(f: list[str], rep: Report) -> None:
    if not _faa_ok(f[8]):
        return
    rep.course_cdeg = _course(f[0])
    rep.speed_mms = _speed(f[4], _KNOT_MM_S)
    if rep.speed_mms is None:
        rep.speed_mms = _speed(f[6], _KMH_MM_S)


def _gsa(f: list[str], rep: Report) -> None:
    if f[1] in ("1", "2", "3"):
        rep.gsa_mode = int(f[1])
    rep.hdop_c = scaled(f[15], 100)


def _zda(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[0])
    if rep.tod_ms is not None:
        rep.date = zda_date(f)


_DECODERS = {
    "RMC": (_rmc, 12), "GGA": (_gga, 10), "GNS": (_gns, 9), "GLL": (_gll, 7),
    "VTG": (_vtg, 9), "GSA": (_gsa, 16), "ZDA": (_zda, 4),
}


def decode(sentence: str) -> Report | None:
    """Decode a checksum-valid sentence; None if its type is not used for fixes.

    Raises ValueError (pynmea2.ParseError is one) when the sentence is of a used type but
    its content is malformed. Missing trailing fields read as empty.
    """
    kind = sentence_type(sentence)
    if kind not in USED_TYPES:
        return None
    msg = pynmea2.parse(sentence, check=True)
    decoder, width = _DECODERS[kind]
    fields = [s.strip() for s in msg.data] + [""] * width
    rep = Report(kind)
    decoder(fields, rep)
    return rep
