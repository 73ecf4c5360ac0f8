"""`tcu fixes`: print the fixes the HAL decodes from a trace or a live receiver.

Like gpsd's gpspipe, it shows what the unit would see, one line per fix: human-readable,
or with --json one JSON object per line for scripts (time, lat, lon, alt, speed, course,
mode; unknown values are null). Lines are flushed one by one for live sources so a pipe
sees each fix as it arrives. A serial device that goes away (USB unplugged) is reopened when
it comes back, with a line on stderr each way; --speed replays a trace at its own pace.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from typing import Any

from tcu.firmware.fix import Fix
from tcu.hal import iter_fixes
from tcu.hal.gnss_time import RolloverCorrector
from tcu.hal.gpsd import GpsdStream
from tcu.hal.nmea import JUMP_MS
from tcu.hal.serial_port import ReconnectingSource
from tcu.hal.summary import summarize
from tcu.tools import progress

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def iso_time(time_ms: int) -> str:
    """Unix milliseconds to ISO 8601 UTC with milliseconds: 2017-01-10T00:09:41.000Z."""
    seconds, millis = divmod(time_ms, 1000)
    when = _EPOCH + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % millis


def _scaled(value: int | None, scale: int) -> float | None:
    return None if value is None else value / scale


def fix_to_json(fix: Fix) -> dict[str, Any]:
    """The --json object of one fix (units: degrees, metres, m/s)."""
    return {
        "time": iso_time(fix.time_ms),
        "lat": fix.lat_e7 / 10_000_000,
        "lon": fix.lon_e7 / 10_000_000,
        "alt": _scaled(fix.alt_cm, 100),
        "speed": _scaled(fix.speed_mms, 1000),
        "course": _scaled(fix.course_cdeg, 100),
        "mode": fix.mode,
    }


def fix_to_text(fix: Fix) -> str:
    """One human-readable line; unknown values are left out."""
    parts = [iso_time(fix.time_ms), "%dD" % fix.mode,
             "%.7f %.7f" % (fix.lat_e7 / 1e7, fix.lon_e7 / 1e7)]
    if fix.alt_cm is not None:
        parts.append("alt %.2f m" % (fix.alt_cm / 100))
    if fix.speed_mms is not None:
        parts.append("speed %.3f m/s" % (fix.speed_mms / 1000))
    if fix.course_cdeg is not None:
        parts.append("course %.2f deg" % (fix.course_cdeg / 100))
    if fix.sats is not None:
        parts.append("sats %d" % fix.sats)
    if fix.hdop_c is not None:
        parts.append("hdop %.2f" % (fix.hdop_c / 100))
    return "  ".join(parts)


def _baudrate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError("not a baud rate: %r" % text)
    return value


def positive_float(what: str) -> Callable[[str], float]:
    """An argparse type: a positive finite number, refused as 'not a positive WHAT'."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError("not a positive %s: %r" % (what, text))
        return value
    return parse


speed_factor = positive_float("speed factor")  # --speed: 2 = twice as fast as recorded


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fixes", help="print the fixes decoded from a trace file or a live receiver")
    parser.add_argument("source", help="a trace file (gpsd .log; UTF-16 and Android GNSS Logger files too), a "
                                       "serial device (/dev/ttyUSB0), a pyserial URL (socket://HOST:PORT) or a "
                                       "running gpsd (gpsd://HOST[:PORT][/DEVICE][?nmea])")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--baud", type=_baudrate, metavar="N",
                        help="serial baud rate (default: detected among 4800/9600/38400/115200 "
                             "on a device, 9600 on a URL; ignored for trace files)")
    parser.add_argument("--speed", type=speed_factor, metavar="X",
                        help="replay a trace at its original timing times X (default: as fast as possible)")
    parser.add_argument("--no-reconnect", dest="reconnect", action="store_false",
                        help="exit when a serial device (or gpsd, or gpsd's device) goes away instead of "
                             "waiting for it to return")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (shown for a trace file when stderr is a terminal and stdout is not)")
    parser.set_defaults(run=run)


def fixes_is_device(source: str) -> bool:
    """A live receiver has no size to show progress against."""
    return "://" in source or source.startswith("/dev/")


def run(args: argparse.Namespace) -> int:
    """Print every fix of args.source; SourceError propagates to the CLI (exit 2)."""
    out = sys.stdout
    reconnect = args.reconnect and args.source.startswith(("/dev/", "gpsd://"))
    shown = progress.wanted(args.quiet, out) and not fixes_is_device(args.source)
    with iter_fixes(args.source, args.baud, speed=args.speed, reconnect=reconnect) as fixes, \
            progress.trace_bar(args.source, "fixes", shown) as wrap:
        if wrap is not None:
            fixes.source = wrap(fixes.source)
        if isinstance(fixes.source, ReconnectingSource | GpsdStream):
            fixes.source.on_event = lambda text: print("tcu fixes: %s" % text, file=sys.stderr, flush=True)
        steps = TimeSteps()
        for fix in fixes:
            fix = steps.see(fix)
            if args.json:
                out.write(json.dumps(fix_to_json(fix)) + "\n")
            else:
                out.write(fix_to_text(fix) + "\n")
            if fixes.is_live:
                out.flush()
        report_summary(summarize(fixes), args.json)
    if steps.back or steps.forward or steps.rollover.corrected:
        print("tcu fixes: %s" % steps.describe(), file=sys.stderr)
    return 0


def report_summary(summary: dict[str, Any], as_json: bool, command: str = "tcu fixes") -> None:
    """Why a source gave no fix or dropped epochs, on stderr: a line, or with --json one JSON
    object ({"summary": {...}}) so that stdout stays one fix per line."""
    if as_json:
        print(json.dumps({"summary": summary}), file=sys.stderr, flush=True)
    elif summary.get("reason"):
        print("%s: %s" % (command, summary["reason"]), file=sys.stderr, flush=True)


class TimeSteps:
    """Counts the receiver's time steps (as the replay's clock does) and corrects week rollover."""

    def __init__(self) -> None:
        self.back = 0
        self.forward = 0
        self.rollover = RolloverCorrector()
        self._last: int | None = None

    def see(self, fix: Fix) -> Fix:
        if self._last is not None:
            self.back += fix.time_ms < self._last
            self.forward += fix.time_ms - self._last > JUMP_MS
        self._last = fix.time_ms
        corrected = self.rollover.correct(fix.time_ms)
        if corrected == fix.time_ms:
            return fix
        return Fix(corrected, fix.lat_e7, fix.lon_e7, fix.mode, fix.alt_cm, fix.speed_mms, fix.course_cdeg,
                   fix.sats, fix.hdop_c)

    def describe(self) -> str:
        return ("receiver time stepped back %d times, jumped forward more than %d s %d times; "
                "%d fixes moved forward 1024 weeks (GPS week rollover)"
                % (self.back, JUMP_MS // 1000, self.forward, self.rollover.corrected))
