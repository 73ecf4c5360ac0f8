"""Field converters of the NMEA decoder: text in, exact integers out, ``ValueError`` for
anything odd; and the small text -> value caches (``_Cache``) that make a field repeated
across an epoch's sentences, or from epoch to epoch, one dict lookup.

Values are exact: decimal text is scaled with integers and rounded half to even, bit for bit
what the previous pynmea2 + ``Fraction`` decoder (``tcu.hal.nmea_reference``) gives. The
``_fast`` forms take the usual text in one regular expression and hand anything else to the
general converter (tests/test_hal_fastpath.py holds them equal).
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable
from typing import TypeVar

_DATE = re.compile(r"(\d\d)(\d\d)(\d\d)")
_KNOT = (1852000, 3600)  # 1 kn = 1852 m/h, in mm/s
_KMH = (1000000, 3600)
_ONE = (1, 1)
_T = TypeVar("_T")
_K = TypeVar("_K", str, bytes)
# FAA / GNS mode letters that mean a computed position (N none, M manual, S simulator).
FAA_FIX_MODES = frozenset("ADPRFE")


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


def time_of_day(text: str) -> int | None:
    """hhmmss[.sss] to milliseconds since midnight (sub-millisecond digits truncated).

    None for an empty field: receivers without a fix often leave the time empty.
    """
    if not text:
        return None
    hhmmss, dot, frac = text.partition(".")
    if not (len(hhmmss) == 6 and hhmmss.isdigit() and (frac.isdigit() or not frac) and text.isascii()):
        raise ValueError("bad time: %r" % text)
    hh, mm, ss = int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:])
    if hh > 23 or mm > 59 or ss > 60:  # 60: leap second
        raise ValueError("bad time: %r" % text)
    return ((hh * 60 + mm) * 60 + ss) * 1000 + int((frac + "000")[:3])


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


def _course(text: str) -> int | None:
    value = scaled(text, _ONE, 100)
    return None if value is None or value < 0 else value % 36000


def _speed(text: str, scale: tuple[int, int]) -> int | None:
    value = scaled(text, scale)
    return None if value is None or value < 0 else value


def _faa_ok(mode: str) -> bool:
    """An absent FAA mode (NMEA < 2.3) does not veto a fix; 'N', 'M', 'S' do."""
    return not mode or mode[0] in FAA_FIX_MODES


def rmc_date(text: str) -> datetime.date | None:
    """ddmmyy to a date (two-digit years 80..99 are 19xx: GPS time starts in 1980)."""
    if not text:
        return None
    m = _DATE.fullmatch(text)
    if not m or not text.isascii():
        raise ValueError("bad date: %r" % text)
    yy = int(m.group(3))
    return datetime.date(1900 + yy if yy >= 80 else 2000 + yy, int(m.group(2)), int(m.group(1)))


class _Cache(dict[_K, _T]):
    """Field text -> converted value, converting on a miss; errors propagate, uncached.

    An epoch's sentences repeat its time and position, and HDOP, altitude or a speed of
    zero repeat from epoch to epoch: a hit is one dict lookup in C instead of a parse.
    ``size`` bounds the memory: a full cache starts over.
    """

    def __init__(self, convert: Callable[[_K], _T], size: int = 64) -> None:
        super().__init__()
        self.convert: Callable[[_K], _T] = convert
        self.size = size

    def __missing__(self, text: _K) -> _T:
        value = self.convert(text)
        if len(self) >= self.size:
            self.clear()
        self[text] = value
        return value


_DATES = _Cache(rmc_date)
_ANGLE = re.compile(r"([0-9]{1,3})([0-5][0-9])(?:[.]([0-9]*))?")


def _magnitude_e7(text: str, limit: int) -> int:
    """``abs(angle_e7(text, ...))``, the usual form in one regex; anything else the slow way.

    The degrees give an even number of 1e-7 degrees, so rounding half to even the whole
    equals the degrees plus the minutes rounded alone; and with up to 6 decimals of a
    minute, minutes * 1e7 / 60 is an integer divided by 6.
    """
    m = _ANGLE.fullmatch(text)
    if m is None:
        value = angle_e7(text, "+", "+", "-", limit)  # raises, or the odd form's answer
        assert value is not None  # the hemisphere is given
        return value
    degrees, whole_minutes, frac = m.groups()
    if frac is None or len(frac) <= 6:
        sixths = int(whole_minutes + frac) * _POW10[6 - len(frac)] if frac else int(whole_minutes) * 1_000_000
        q, r = divmod(sixths, 6)
        if r > 3 or (r == 3 and q & 1):
            q += 1
        value = int(degrees) * 10_000_000 + q
    else:
        den = _POW10[len(frac)]
        value = round_div((int(degrees) * 60 * den + int(whole_minutes + frac)) * 10_000_000, 60 * den)
    if value > limit * 10_000_000:
        raise ValueError("coordinate out of range: %r" % text)
    return value


_CENTI_FORM = re.compile(r"(-?)([0-9]+)(?:[.]([0-9]{0,2}))?")


def _centi(text: str) -> int | None:
    """``scaled(text, _ONE, 100)``: with up to 2 decimals there is nothing to round."""
    m = _CENTI_FORM.fullmatch(text)
    if m is None:
        return scaled(text, _ONE, 100)
    sign, whole, frac = m.groups()
    value = int(whole) * 100 + (int((frac + "00")[:2]) if frac else 0)
    return -value if sign else value


def _minute_ms(hhmm: str) -> int:
    value = time_of_day(hhmm + "00")  # validates: 4 ASCII digits, hh <= 23, mm <= 59
    assert value is not None
    return value


def _second_ms(ss_frac: str) -> int:
    value = time_of_day("0000" + ss_frac)  # validates: ss <= 60, then "." and digits, if any
    assert value is not None
    return value


# Every minute of a day, every second with the fractions receivers use (.0, .00, .1, ...).
_MINUTES = _Cache(_minute_ms, 1440)
_SECONDS = _Cache(_second_ms, 1024)


def _split_time_of_day(text: str) -> int | None:
    """``time_of_day`` as the sum of its minute and its second, each from a small cache.

    Exact: ``text`` is valid iff both parts are (``time_of_day`` checks the 6-digit head
    and the fraction, and the split is at a fixed position), and then the sum is its value.
    """
    if not text:
        return None
    return _MINUTES[text[:4]] + _SECONDS[text[4:]]


_TOD = _Cache(_split_time_of_day)
_LAT = _Cache(functools.partial(_magnitude_e7, limit=90))  # magnitudes: the hemisphere's sign is
_LON = _Cache(functools.partial(_magnitude_e7, limit=180))  # applied by the caller
_CENTI = _Cache(_centi)  # altitudes
_HDOPS = _Cache(_centi)  # apart: HDOP changes far less often than altitude
_COURSES = _Cache(_course)
_KNOTS = _Cache(functools.partial(_speed, scale=_KNOT))
_KMHS = _Cache(functools.partial(_speed, scale=_KMH))


def zda_date(f: list[str]) -> datetime.date | None:
    """The date of a ZDA's fields (day, month, 4-digit year), None if absent; ValueError if bad."""
    if not (f[1] and f[2] and f[3]):
        return None
    if not (f[1].isdigit() and f[2].isdigit() and f[3].isdigit() and len(f[3]) == 4):
        raise ValueError("bad ZDA date")
    return datetime.date(int(f[3]), int(f[2]), int(f[1]))


Position = tuple[int, int] | None  # None: the sentence vetoes the fix (empty or (0, 0) position)


def position(lat: str, ns: str, lon: str, ew: str) -> Position:
    """(lat_e7, lon_e7) of a sentence's four position fields; None when they veto the fix
    (empty fields, or the (0, 0) placeholder); ValueError if malformed."""
    if lat or ns:
        if ns == "N":
            lat_e7: int | None = _LAT[lat]
        elif ns == "S":
            lat_e7 = -_LAT[lat]
        else:
            raise ValueError("bad hemisphere: %r" % ns)
    else:
        lat_e7 = None
    if lon or ew:
        if ew == "E":
            lon_e7: int | None = _LON[lon]
        elif ew == "W":
            lon_e7 = -_LON[lon]
        else:
            raise ValueError("bad hemisphere: %r" % ew)
    else:
        lon_e7 = None
    if lat_e7 is None or lon_e7 is None or (lat_e7 == 0 and lon_e7 == 0):
        return None
    return lat_e7, lon_e7
