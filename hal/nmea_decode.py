"""Decode one checksum-valid NMEA sentence into a flat, validated ``Report``.

The fields a fix needs are split and converted by hand, in integer arithmetic: no pynmea2 on
the hot path (bench/decode_throughput.py: several times faster than ``pynmea2.parse`` alone),
and none of its traps (``latitude`` is 0.0 for empty fields, a field that fails conversion
comes back as the raw string). Every conversion is strict and raises ``ValueError`` on
anything odd; the assembler counts and skips such sentences. Values are exact: decimal text
is scaled with integers and rounded half to even, so the result is bit for bit what the
previous pynmea2 + ``Fraction`` decoder (``tcu.hal.nmea_reference``, the test oracle) gives.

Sentence-level acceptance follows ``pynmea2.parse(check=True)`` too: a talker of two word
characters, a three-letter type, and no ``*`` inside the data.
"""

from __future__ import annotations

import datetime
import re

# Sentence types that carry something a Fix needs; everything else is ignored cheaply.
USED_TYPES = frozenset({"RMC", "GGA", "GNS", "GLL", "VTG", "GSA", "ZDA"})

# GGA quality 1..6 are real (if possibly degraded) fixes; 0 is none, 7 is a position typed
# in by hand and 8 is the receiver's simulator: neither locates the car.
GGA_FIX_QUALITIES = frozenset("123456")
# FAA / GNS mode letters that mean a computed position (N none, M manual, S simulator).
FAA_FIX_MODES = frozenset("ADPRFE")

_DATE = re.compile(r"(\d\d)(\d\d)(\d\d)")
_TALKER = re.compile(r"[$]\w\w[A-Z]{3},")
_KNOT = (1852000, 3600)  # 1 kn = 1852 m/h, in mm/s
_KMH = (1000000, 3600)
_ONE = (1, 1)


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


def round_div(num: int, den: int) -> int:
    """``num / den`` rounded half to even (as ``round(Fraction)``); ``den`` > 0."""
    q, r = divmod(num, den)
    r2 = r + r
    if r2 > den or (r2 == den and q & 1):
        q += 1
    return q


def _unsigned(text: str) -> tuple[int, int]:
    """Digits[.digits] to (mantissa, number of decimals); ValueError for anything else."""
    whole, _, frac = text.partition(".")
    if not ((whole.isdigit() or not whole) and (frac.isdigit() or not frac) and (whole or frac)
            and text.isascii()):
        raise ValueError("not a number: %r" % text)
    return int(whole + frac), len(frac)


def scaled(text: str, scale: tuple[int, int] = _ONE, unit: int = 1) -> int | None:
    """``round(decimal(text) * unit * scale[0] / scale[1])``; None for an empty field."""
    if not text:
        return None
    if text[0] in "+-":
        mantissa, decimals = _unsigned(text[1:])
        if text[0] == "-":
            mantissa = -mantissa
    else:
        mantissa, decimals = _unsigned(text)
    return round_div(mantissa * unit * scale[0], _POW10[decimals] * scale[1])


_POW10 = [10 ** n for n in range(256)]
_TOD_CACHE: dict[str, int] = {}


def time_of_day(text: str) -> int | None:
    """hhmmss[.sss] to milliseconds since midnight (sub-millisecond digits truncated).

    None for an empty field: receivers without a fix often leave the time empty.
    """
    if not text:
        return None
    tod = _TOD_CACHE.get(text)  # an epoch's sentences repeat its time: parse it once
    if tod is not None:
        return tod
    hhmmss, dot, frac = text.partition(".")
    if not (len(hhmmss) == 6 and hhmmss.isdigit() and (frac.isdigit() or not frac) and text.isascii()):
        raise ValueError("bad time: %r" % text)
    hh, mm, ss = int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:])
    if hh > 23 or mm > 59 or ss > 60:  # 60: leap second
        raise ValueError("bad time: %r" % text)
    tod = ((hh * 60 + mm) * 60 + ss) * 1000 + int((frac + "000")[:3])
    if len(_TOD_CACHE) > 64:
        _TOD_CACHE.clear()
    _TOD_CACHE[text] = tod
    return tod


def angle_e7(text: str, hemi: str, pos: str, neg: str, limit: int) -> int | None:
    """(d)ddmm.mmmm + hemisphere to degrees * 1e7; None if both fields are empty."""
    if not text and not hemi:
        return None
    whole, _, frac = text.partition(".")
    if not (2 < len(whole) < 6 and whole.isdigit() and (frac.isdigit() or not frac)
            and text.isascii()) or (hemi != pos and hemi != neg):
        raise ValueError("bad coordinate: %r %r" % (text, hemi))
    den = _POW10[len(frac)]
    minutes = int(whole[-2:] + frac)  # minutes * den
    if minutes >= 60 * den:
        raise ValueError("bad minutes: %r" % text)
    value = round_div((int(whole[:-2]) * 60 * den + minutes) * 10_000_000, 60 * den)
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
    value = scaled(text, _ONE, 100)
    return None if value is None or value < 0 else value % 36000


def _speed(text: str, scale: tuple[int, int]) -> int | None:
    value = scaled(text, scale)
    return None if value is None or value < 0 else value


def _faa_ok(mode: str) -> bool:
    """An absent FAA mode (NMEA < 2.3) does not veto a fix; 'N', 'M', 'S' do."""
    return not mode or mode[0] in FAA_FIX_MODES


_DATE_CACHE: dict[str, datetime.date] = {}


def rmc_date(text: str) -> datetime.date | None:
    """ddmmyy to a date (two-digit years 80..99 are 19xx: GPS time starts in 1980)."""
    if not text:
        return None
    date = _DATE_CACHE.get(text)
    if date is not None:
        return date
    m = _DATE.fullmatch(text)
    if not m or not text.isascii():
        raise ValueError("bad date: %r" % text)
    yy = int(m.group(3))
    date = datetime.date(1900 + yy if yy >= 80 else 2000 + yy, int(m.group(2)), int(m.group(1)))
    if len(_DATE_CACHE) > 16:
        _DATE_CACHE.clear()
    _DATE_CACHE[text] = date
    return date


def _rmc(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[0])
    rep.date = rmc_date(f[8])
    rep.fix = f[1] == "A" and _faa_ok(f[11])
    if rep.fix:
        _position(rep, f[2], f[3], f[4], f[5])
        rep.speed_mms = _speed(f[6], _KNOT)
        rep.course_cdeg = _course(f[7])


def _gga(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[0])
    rep.fix = f[5] in GGA_FIX_QUALITIES
    if rep.fix:
        _position(rep, f[1], f[2], f[3], f[4])
        if f[9] in ("", "M"):
            rep.alt_cm = scaled(f[8], _ONE, 100)
        rep.sats = int(f[6]) if f[6].isdigit() else None
        rep.hdop_c = scaled(f[7], _ONE, 100)


def _gns(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[0])
    rep.fix = any(c in FAA_FIX_MODES for c in f[5])
    if rep.fix:
        _position(rep, f[1], f[2], f[3], f[4])
        rep.alt_cm = scaled(f[8], _ONE, 100)
        rep.sats = int(f[6]) if f[6].isdigit() else None
        rep.hdop_c = scaled(f[7], _ONE, 100)


def _gll(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[4])
    rep.fix = f[5] == "A" and _faa_ok(f[6])
    if rep.fix:
        _position(rep, f[0], f[1], f[2], f[3])


def _vtg(f: list[str], rep: Report) -> None:
    if not _faa_ok(f[8]):
        return
    rep.course_cdeg = _course(f[0])
    rep.speed_mms = _speed(f[4], _KNOT)
    if rep.speed_mms is None:
        rep.speed_mms = _speed(f[6], _KMH)


def _gsa(f: list[str], rep: Report) -> None:
    if f[1] in ("1", "2", "3"):
        rep.gsa_mode = int(f[1])
    rep.hdop_c = scaled(f[15], _ONE, 100)


def _zda(f: list[str], rep: Report) -> None:
    rep.tod_ms = time_of_day(f[0])
    if rep.tod_ms is not None and f[1] and f[2] and f[3]:
        if not (f[1].isdigit() and f[2].isdigit() and f[3].isdigit() and len(f[3]) == 4):
            raise ValueError("bad ZDA date")
        rep.date = datetime.date(int(f[3]), int(f[2]), int(f[1]))


_DECODERS = {
    "RMC": (_rmc, 12), "GGA": (_gga, 10), "GNS": (_gns, 9), "GLL": (_gll, 7),
    "VTG": (_vtg, 9), "GSA": (_gsa, 16), "ZDA": (_zda, 4),
}


def sentence_type(sentence: str) -> str | None:
    """The 3-letter type of a talker sentence ("$GNRMC,..." -> "RMC"); None if proprietary."""
    if len(sentence) < 7 or sentence[1] == "P" or sentence[6] != ",":
        return None
    return sentence[3:6]


def decode(sentence: str) -> Report | None:
    """Decode a checksum-valid sentence; None if its type is not used for fixes.

    Raises ValueError when the sentence is of a used type but its content is malformed.
    Missing trailing fields read as empty.
    """
    kind = sentence_type(sentence)
    if kind not in USED_TYPES:
        return None
    star = sentence.rfind("*")
    if star < 0 or not _TALKER.match(sentence):
        raise ValueError("not a talker sentence: %r" % sentence)
    data = sentence[7:star]
    if "*" in data:
        raise ValueError("'*' inside the data: %r" % sentence)
    decoder, width = _DECODERS[kind]
    fields = data.split(",")
    if " " in data:
        fields = [s.strip() for s in fields]
    if len(fields) < width:
        fields += [""] * width
    rep = Report(kind)
    decoder(fields, rep)
    return rep
