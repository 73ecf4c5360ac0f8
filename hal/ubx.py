"""u-blox UBX binary: NAV-PVT fixes (dated by NAV-TIMEUTC when needed), on the same stream as NMEA.

Framing is by hand because it is five lines (sync ``B5 62``, class, id, length, Fletcher-8
checksum) and must run on every chunk of an NMEA stream too (one ``bytes.find`` in C when there
is no UBX); decoding the payload is pyubx2's, a well-kept parser of every UBX message, so the
field layout is not re-typed here. Only NAV-PVT (01 07) and NAV-TIMEUTC (01 21) are framed;
every other message is skipped by its length, unchecked.

A NAV-PVT is a whole epoch, so it makes a fix at once, by the NMEA rules (hal/nmea.py): none
without validity (fixType 2D, 3D or GNSS+dead reckoning, gnssFixOK, validTime, invalidLlh
clear), none without a date (its own validDate, else the last valid NAV-TIMEUTC, stepping a
day across midnight), never (0, 0).

The idle path (``heartbeat``) reads the date, time, validity and fixType at their fixed offsets
with ``struct``: latitude and longitude (payload bytes 24..31) are never decoded.
"""

from __future__ import annotations

import datetime
import struct

from pyubx2 import UBXMessage, UBXReader

from tcu.firmware.fix import MODE_2D, MODE_3D, Fix

from .idle import Heartbeat

_SYNC = b"\xb5\x62"
NAV_PVT = b"\x01\x07"
NAV_TIMEUTC = b"\x01\x21"
_WANTED = (NAV_PVT, NAV_TIMEUTC)
_MAX_PAYLOAD = 1024  # NAV-PVT is 92, NAV-TIMEUTC 20: a longer "frame" of theirs is noise
_DAY_MS = 86_400_000
_FIX_TYPES = {2: MODE_2D, 3: MODE_3D, 4: MODE_3D}  # 4: GNSS + dead reckoning; 1 DR only, 5 time only
_TIME = struct.Struct("<IHBBBBBBIiBB")  # iTOW year month day hour min sec valid tAcc nano fixType flags
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


def _checksum(body: bytes) -> bytes:
    a = b = 0
    for byte in body:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


class UbxFramer:
    """Feed raw bytes; get the whole, checksum-valid NAV-PVT and NAV-TIMEUTC frames."""

    def __init__(self) -> None:
        self.frames = 0  # valid frames returned
        self.bad = 0  # frames of a wanted type with a wrong checksum or length
        self._pending = b""

    @property
    def active(self) -> bool:
        """Frames were seen, or one is in progress: every chunk must be looked at."""
        return bool(self.frames or self._pending)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._pending + data if self._pending else data
        self._pending = b""
        out: list[bytes] = []
        pos = buf.find(_SYNC)
        while pos >= 0:
            if len(buf) - pos < 6:
                self._pending = buf[pos:]
                break
            kind = buf[pos + 2:pos + 4]
            length = buf[pos + 4] | buf[pos + 5] << 8
            if kind not in _WANTED or length > _MAX_PAYLOAD:
                pos = buf.find(_SYNC, pos + 2)
                continue
            end = pos + 8 + length
            if end > len(buf):
                self._pending = buf[pos:]
                break
            frame = buf[pos:end]
            if _checksum(frame[2:-2]) == frame[-2:]:
                out.append(frame)
                self.frames += 1
                pos = buf.find(_SYNC, end)
            else:
                self.bad += 1
                pos = buf.find(_SYNC, pos + 2)
        return out


def _int(msg: UBXMessage, name: str) -> int:
    """A decoded integer field: pyubx2 sets each field as an attribute at parse time, unseen by
    type checkers, so it is read by name and its type checked (the full path only)."""
    value = getattr(msg, name)
    if not isinstance(value, int):
        raise TypeError("pyubx2 decoded %s.%s as %r, not an integer" % (msg.identity, name, value))
    return value


def _float(msg: UBXMessage, name: str) -> float:
    """A decoded scaled field (degrees): a float, or an int where pyubx2 left it unscaled."""
    value = getattr(msg, name)
    if not isinstance(value, int | float):
        raise TypeError("pyubx2 decoded %s.%s as %r, not a number" % (msg.identity, name, value))
    return value


def _utc_ms(year: int, month: int, day: int, hour: int, minute: int, sec: int, nano: int) -> int:
    days = datetime.date(year, month, day).toordinal() - _EPOCH_ORDINAL
    return ((days * 24 + hour) * 60 + minute) * 60_000 + sec * 1000 + round(nano / 1_000_000)


class UbxDecoder:
    """NAV-PVT to Fix (full path), or to Heartbeat (idle path); counts what it drops."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._ref: datetime.date | None = None  # the last valid UTC date (NAV-TIMEUTC or NAV-PVT)
        self._ref_tod = 0

    def _count(self, cause: str) -> None:
        self.counts[cause] = self.counts.get(cause, 0) + 1

    def _date_time(self, frame: bytes) -> tuple[int | None, int, bool]:
        """(Unix ms or None without a date, time of day ms, has a fix) from the fixed offsets."""
        (_, year, month, day, hour, minute, sec, valid, _, nano, fix_type, flags) = _TIME.unpack_from(frame, 6)
        tod = ((hour * 60 + minute) * 60 + sec) * 1000 + round(nano / 1_000_000)
        has_fix = fix_type in _FIX_TYPES and bool(flags & 0x01) and bool(valid & 0x02)
        if frame[2:4] == NAV_TIMEUTC:  # its own layout: validUTC is bit 2 of byte 19
            (_, _, nano, year, month, day, hour, minute, sec, valid) = struct.unpack_from("<IIiHBBBBBB", frame, 6)
            if not valid & 0x04:
                return None, 0, False
            self._set_ref(year, month, day, hour, minute, sec, nano)
            return None, 0, False
        if not valid & 0x02 or hour > 23 or minute > 59 or sec > 60:
            return None, tod, False
        if valid & 0x01:
            try:
                self._set_ref(year, month, day, hour, minute, sec, nano)
            except ValueError:
                return None, tod, False
        if self._ref is None:
            return None, tod, has_fix
        days = self._ref.toordinal() - _EPOCH_ORDINAL
        if tod - self._ref_tod < -_DAY_MS // 2:
            days += 1
        elif tod - self._ref_tod > _DAY_MS // 2:
            days -= 1
        return days * _DAY_MS + tod, tod, has_fix

    def _set_ref(self, year: int, month: int, day: int, hour: int, minute: int, sec: int, nano: int) -> None:
        self._ref = datetime.date(year, month, day)
        self._ref_tod = ((hour * 60 + minute) * 60 + sec) * 1000 + round(nano / 1_000_000)

    def heartbeat(self, frame: bytes) -> Heartbeat | None:
        """The idle path: a NAV-PVT's second and fix flag; positions are not read."""
        time_ms, tod, has_fix = self._date_time(frame)
        if frame[2:4] != NAV_PVT or (time_ms is None and tod == 0 and not has_fix):
            return None
        return Heartbeat(time_ms, tod, has_fix)

    def fix(self, frame: bytes) -> Fix | None:
        """The full path: a NAV-PVT's fix, by the NMEA rules; None (counted) if it is not one."""
        time_ms, _, has_fix = self._date_time(frame)
        if frame[2:4] != NAV_PVT:
            return None
        if not has_fix:
            self._count("no_fix")
            return None
        msg = UBXReader.parse(frame)
        lat_e7, lon_e7 = round(_float(msg, "lat") * 1e7), round(_float(msg, "lon") * 1e7)
        if _int(msg, "invalidLlh") or (lat_e7 == 0 and lon_e7 == 0) or abs(lat_e7) > 900_000_000 \
                or abs(lon_e7) > 1_800_000_000:
            self._count("no_fix")
            return None
        if time_ms is None:
            self._count("no_date")
            return None
        mode = _FIX_TYPES[_int(msg, "fixType")]
        return Fix(time_ms, lat_e7, lon_e7, mode, round(_int(msg, "hMSL") / 10) if mode == MODE_3D else None,
                   _int(msg, "gSpeed"), round(_float(msg, "headMot") * 100), _int(msg, "numSV"), None)
