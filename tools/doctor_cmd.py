"""`tcu doctor`: which serial ports have a GNSS receiver, at which baud rate, with a fix or not.

Candidates are /dev/ttyACM*, /dev/ttyUSB*, /dev/serial/by-id/* and any port given on the
command line (a by-id link and the device it names are probed once). Each is read at 4800,
9600, 38400 and 115200 baud until checksum-valid NMEA comes in; at that rate the rest of
the window gives the talkers (GP, GN, GL, ...) and whether the receiver reported a fix in
it (an RMC, GGA or GNS saying so).
Exit status 0 if at least one port speaks NMEA, 1 if none does.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Any

from tcu.firmware.errors import SourceError
from tcu.hal.framer import NmeaFramer
from tcu.hal.idle import IdleScanner
from tcu.hal.serial_port import BAUD_RATES, detect_baud

PATTERNS = ("/dev/ttyACM*", "/dev/ttyUSB*", "/dev/serial/by-id/*")


def _window(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError("not a window in seconds (0..60]: %r" % text)
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("doctor", help="find serial ports that speak NMEA, their baud rate and fix")
    parser.add_argument("ports", nargs="*", help="more ports or pyserial URLs to probe")
    parser.add_argument("--json", action="store_true", help="one JSON object per port")
    parser.add_argument("--window", type=_window, default=2.0, metavar="S",
                        help="seconds to listen at each baud rate (default 2)")
    parser.set_defaults(run=run)


def candidates(extra: list[str]) -> list[str]:
    """Ports to probe, each real device once (a by-id symlink is reported under its name)."""
    seen: set[str] = set()
    out: list[str] = []
    for path in extra + sorted(p for pattern in PATTERNS for p in glob.glob(pattern)):
        key = os.path.realpath(path) if "://" not in path else path
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def probe_port(path: str, window_s: float) -> dict[str, Any]:
    """The report for one port: nmea, baud, talkers, fix (and error when it cannot be read)."""
    report: dict[str, Any] = {"port": path, "nmea": False, "baud": None, "talkers": [], "fix": None}
    try:
        baud, data = detect_baud(path, BAUD_RATES, window_s, enough=None)
    except SourceError as exc:
        report["error"] = str(exc)
        return report
    scanner = IdleScanner()
    beats = scanner.feed(data + b"\r\n")
    while scanner.backlog:
        beats += scanner.feed(b"")
    talkers = {s[1:3] for s in NmeaFramer().feed(data + b"\r\n") if s[1] != "P"}
    fix = None if not scanner.sentences else any(beat.has_fix for beat in beats)
    report.update(nmea=True, baud=baud, talkers=sorted(talkers), fix=fix)
    return report


def _text(report: dict[str, Any]) -> str:
    if not report["nmea"]:
        return "%s: no NMEA (%s)" % (report["port"], report.get("error", "nothing valid"))
    fix = {True: "fix", False: "no fix", None: "fix unknown (no RMC/GGA/GNS)"}[report["fix"]]
    return "%s: NMEA at %d baud, talkers %s, %s" % (
        report["port"], report["baud"], ",".join(report["talkers"]) or "none", fix)


def run(args: argparse.Namespace) -> int:
    ports = candidates(args.ports)
    if not ports:
        print("tcu doctor: no serial ports found (%s)" % ", ".join(PATTERNS), file=sys.stderr)
        return 1
    found = 0
    for path in ports:
        report = probe_port(path, args.window)
        found += report["nmea"]
        print(json.dumps(report) if args.json else _text(report), flush=True)
    return 0 if found else 1
