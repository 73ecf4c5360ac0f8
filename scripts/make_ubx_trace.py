"""Make a u-blox UBX trace (NAV-PVT, NAV-TIMEUTC) from a recorded NMEA log, for tests and the bench.

The gpsd corpus has no log with UBX position messages (``ublox-zed-f9p_hpg1.11.log`` carries
RXM-RAWX and NAV-CLOCK only), so the UBX decoder is scored on traces made from real receivers'
NMEA epochs: each epoch the HAL decodes from NAME.log becomes a NAV-PVT built with pyubx2 (the
same library the HAL parses with, but a frame is only bytes: gpsd, which decodes UBX on its own,
is the independent judge in tests/test_gpsd_source.py and bench/gpsd_conformance.py).

Modes:
* ``ubx``: UBX only. Before the first fix, NOT_FIXED epochs (fixType 0, position (0, 0), a date
  not valid) as a receiver sends while acquiring; one epoch in the middle flagged gnssFixOK=0
  (a fix the receiver does not trust) and one with validDate=0 that a NAV-TIMEUTC dates.
* ``mixed``: the log's own NMEA, with a NAV-PVT after each epoch's sentences (a receiver
  configured for both on one port).

Usage: python scripts/make_ubx_trace.py NAME.log OUT.log [--mode ubx|mixed] [--max N]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from pyubx2 import GET, UBXMessage

from tcu.firmware.fix import Fix
from tcu.hal import iter_fixes
from tcu.hal.pacer import sentence_tod
from tcu.hal.trace import TraceFile

_GPS_EPOCH = datetime.datetime(1980, 1, 6, tzinfo=datetime.UTC)
_WEEK_MS = 7 * 86_400_000
LEAP_S = 18  # GPS - UTC since 2017; the iTOW only orders messages here


def itow(time_ms: int) -> int:
    gps_ms = time_ms - int(_GPS_EPOCH.timestamp() * 1000) + LEAP_S * 1000
    return gps_ms % _WEEK_MS


def _exact(value: int, scale: float) -> float:
    """``value * scale`` for pyubx2, which stores ``int(x / scale)``: nudged half a unit away
    from zero so that the truncation gives ``value`` back exactly."""
    return (value + (0.5 if value >= 0 else -0.5)) * scale


def nav_pvt(fix: Fix | None, time_ms: int, *, fix_ok: bool = True, date_ok: bool = True) -> bytes:
    """One NAV-PVT frame: the fix, or (None) a receiver still acquiring at ``time_ms``."""
    when = datetime.datetime.fromtimestamp(time_ms / 1000, datetime.UTC)
    # Payload fields only (parsebitfield, pyubx2's default, is passed by name); floats are scaled ones.
    values: dict[str, float] = dict(
        iTOW=itow(time_ms), year=when.year, month=when.month, day=when.day, hour=when.hour, min=when.minute,
        second=when.second, nano=(time_ms % 1000) * 1_000_000,
        validTime=1, validDate=1 if date_ok else 0, fullyResolved=1 if date_ok else 0)
    if fix is None:
        values.update(fixType=0, gnssFixOk=0, numSV=0, lat=0.0, lon=0.0, tAcc=1_000_000_000)
    else:
        values.update(fixType=fix.mode, gnssFixOk=1 if fix_ok else 0, numSV=fix.sats or 0,
                      lat=_exact(fix.lat_e7, 1e-7), lon=_exact(fix.lon_e7, 1e-7), hAcc=2500, vAcc=4000, tAcc=30,
                      hMSL=(fix.alt_cm or 0) * 10, height=(fix.alt_cm or 0) * 10,
                      gSpeed=fix.speed_mms or 0, headMot=_exact((fix.course_cdeg or 0) * 1000, 1e-5),
                      pDOP=_exact(fix.hdop_c or 100, 0.01), sAcc=200, headAcc=10.0)
    frame = UBXMessage("NAV", "NAV-PVT", GET, parsebitfield=1, **values).serialize()
    for tries in range(1, 64):  # LF "#" would read as a comment line of the gpsd log format
        if b"\n#" not in frame:
            break
        values["tAcc"] = int(values["tAcc"]) + 1  # fields no fix carries: the checksum changes
        values["nano"] = int(values["nano"]) + tries % 2
        frame = UBXMessage("NAV", "NAV-PVT", GET, parsebitfield=1, **values).serialize()
    return frame


def nav_timeutc(time_ms: int) -> bytes:
    when = datetime.datetime.fromtimestamp(time_ms / 1000, datetime.UTC)
    return UBXMessage("NAV", "NAV-TIMEUTC", GET, iTOW=itow(time_ms), tAcc=30, nano=(time_ms % 1000) * 1_000_000,
                      year=when.year, month=when.month, day=when.day, hour=when.hour, min=when.minute,
                      sec=when.second, validTOW=1, validWKN=1, validUTC=1).serialize()


def header(log: Path, mode: str) -> bytes:
    return ("# Made by scripts/make_ubx_trace.py --mode %s from %s (gpsd corpus, BSD-2-Clause):\n"
            "# the receiver's NMEA epochs as u-blox NAV-PVT frames.\n" % (mode, log.name)).encode("ascii")


def ubx_only(log: Path, limit: int) -> bytes:
    fixes = list(iter_fixes(str(log)))[:limit]
    out = [header(log, "ubx")]
    if not fixes:
        return b"".join(out)
    for back in (3, 2, 1):  # acquiring: no fix, no valid date, position fields zero
        out.append(nav_pvt(None, fixes[0].time_ms - back * 1000, date_ok=False))
    middle = len(fixes) // 2
    for n, fix in enumerate(fixes):
        if n == middle + 1:
            out.append(nav_timeutc(fix.time_ms))  # dates the next NAV-PVT, whose own date is not valid
        out.append(nav_pvt(fix, fix.time_ms, fix_ok=n != middle, date_ok=n != middle + 1))
    return b"".join(out)


def mixed(log: Path, limit: int) -> bytes:
    """The NMEA lines as recorded, each epoch followed by its NAV-PVT."""
    fixes = {fix.time_ms % 86_400_000: fix for fix in list(iter_fixes(str(log)))[:limit]}
    out = [header(log, "mixed")]
    current: int | None = None
    epochs = 0
    lines: list[bytes] = []
    with TraceFile(str(log)) as source:
        while chunk := source.read():
            lines.append(chunk)
    for line in b"".join(lines).splitlines(keepends=True):
        tod = sentence_tod(line.decode("ascii", "replace").strip()) if line.startswith(b"$") else None
        if tod is not None and tod != current:
            if current in fixes:
                out.append(nav_pvt(fixes[current], fixes[current].time_ms))
            epochs += 1
            if epochs > limit:
                return b"".join(out)
            current = tod
        out.append(line)
    if current in fixes:
        out.append(nav_pvt(fixes[current], fixes[current].time_ms))
    return b"".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])  # None under python -OO
    parser.add_argument("log", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--mode", choices=("ubx", "mixed"), default="ubx")
    parser.add_argument("--max", type=int, default=10**9, help="at most this many epochs")
    args = parser.parse_args(argv)
    data = ubx_only(args.log, args.max) if args.mode == "ubx" else mixed(args.log, args.max)
    args.out.write_bytes(data)
    print("%s: %d bytes" % (args.out, len(data)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
