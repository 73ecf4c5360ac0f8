"""`tcu doctor`: which serial ports have a GNSS receiver, at which baud rate, with a fix or not;
with `--config FILE` or `tcu run`'s options, whether that whole setup will run.

Candidates are /dev/ttyACM*, /dev/ttyUSB*, /dev/serial/by-id/* and any port given on the
command line (a by-id link and the device it names are probed once). Each is read at 4800,
9600, 38400 and 115200 baud until checksum-valid NMEA comes in; at that rate the rest of
the window gives the talkers (GP, GN, GL, ...) and whether the receiver reported a fix in
it (an RMC, GGA or GNS saying so).
Exit status 0 if at least one port speaks NMEA, 1 if none does.

Given --config (or $TCU_CONFIG) or any of `tcu run`'s options (--gps, --broker, --tls-*,
--state, --backend-key, ...), or --setup for the defaults, it checks that setup instead, one
line per check, ok / warn / FAIL with a remedy (tools/doctor_checks.py): the GPS source, the
user's access to its device, the broker (TCP, TLS, CONNACK), the key files, the state
directory, the control socket path, the clock and gpiozero for gpio: specs. Exit status 1
if any check FAILs.
"""

from __future__ import annotations

import argparse
import getpass
import glob
import grp
import json
import os
import pwd
import stat
import sys
from typing import Any

from tcu.emulator.config import Config
from tcu.firmware.errors import SourceError, TcuError, UsageError
from tcu.hal.framer import NmeaFramer
from tcu.hal.idle import IdleScanner
from tcu.hal.serial_port import BAUD_RATES, detect_baud
from tcu.tools.doctor_checks import FAIL, OK, WARN, Finding
from tcu.tools.fixes_cmd import _baudrate

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
    parser.add_argument("--json", action="store_true", help="one JSON object per port (or per check)")
    parser.add_argument("--window", type=_window, default=2.0, metavar="S",
                        help="seconds to listen at each baud rate (default 2)")
    setup = parser.add_argument_group("the whole setup, as `tcu run` would run it")
    setup.add_argument("--setup", action="store_true", help="check the setup even with no option or config given")
    setup.add_argument("--config", metavar="FILE", help="tcu run's TOML configuration (default: $TCU_CONFIG)")
    for option, kind, metavar in SETUP_OPTIONS:
        setup.add_argument(option, type=kind, metavar=metavar, default=None, help="as for `tcu run`",
                           action="append" if option == "--input" else "store")
    parser.set_defaults(run=run)


def _auto_baud(text: str) -> int | str:
    return "auto" if text == "auto" else _baudrate(text)


def _hours(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number of hours: %r" % text) from None


# tcu run's options, checked by the same config loader (tcu.emulator.config) as `tcu run`.
SETUP_OPTIONS = (("--gps", str, "SOURCE"), ("--baud", _auto_baud, "N"), ("--broker", str, "URL"),
                 ("--unit", str, "ID"), ("--state", str, "DIR"), ("--control", str, "PATH"),
                 ("--indicator", str, "SPEC"), ("--input", str, "SPEC"), ("--tls-ca", str, "FILE"),
                 ("--tls-cert", str, "FILE"), ("--tls-key", str, "FILE"), ("--username", str, "NAME"),
                 ("--password-file", str, "FILE"), ("--backend-key", str, "PEM"),
                 ("--backend-hmac-key", str, "FILE"), ("--e2e-key", str, "FILE"),
                 ("--audit-retention", _hours, "HOURS"))


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
    talkers, fix = describe_nmea(data)
    report.update(nmea=True, baud=baud, talkers=talkers, fix=fix)
    return report


def describe_nmea(data: bytes) -> tuple[list[str], bool | None]:
    """(talkers, fix) of a receiver's bytes: fix None if no RMC, GGA or GNS said either way."""
    scanner = IdleScanner()
    beats = scanner.feed(data + b"\r\n")  # every heartbeat of the bytes, in one call
    talkers = {s[1:3] for s in NmeaFramer().feed(data + b"\r\n") if s[1] != "P"}
    return sorted(talkers), None if not scanner.sentences else any(beat.has_fix for beat in beats)


def _text(report: dict[str, Any]) -> str:
    if not report["nmea"]:
        return "%s: no NMEA (%s)" % (report["port"], report.get("error", "nothing valid"))
    fix = {True: "fix", False: "no fix", None: "fix unknown (no RMC/GGA/GNS)"}[report["fix"]]
    return "%s: NMEA at %d baud, talkers %s, %s" % (
        report["port"], report["baud"], ",".join(report["talkers"]) or "none", fix)


def wants_setup(args: argparse.Namespace) -> bool:
    given = [args.setup, args.config, os.environ.get("TCU_CONFIG")]
    return any(given) or any(getattr(args, option[2:].replace("-", "_")) is not None for option, _, _ in SETUP_OPTIONS)


def run_setup(args: argparse.Namespace) -> int:
    """Every check of the setup, one line (or JSON object) each; 1 if any FAILs."""
    from tcu.emulator.config import resolve
    from tcu.tools.doctor_checks import run_checks

    if args.ports:
        raise UsageError("ports to probe go without setup options; the setup's GPS is --gps (or gps.source)")
    if args.baud == "auto":
        args.baud = None
    try:
        config = resolve(args)
    except UsageError as err:
        findings = [Finding("config", FAIL, str(err), "fix the configuration file or option")]
    else:
        where = "config %s" % config.path if config.path else "options only, no config file"
        findings = [Finding("config", "ok", where)] + run_checks(config, args.window)
    for finding in findings:
        print(json.dumps(finding.as_dict()) if args.json else finding.text(), flush=True)
    failed = sum(f.level == FAIL for f in findings)
    if not args.json:
        print("%d checks: %s" % (len(findings), "%d FAILED" % failed if failed else "all passed"
                                 + (" (%d warnings)" % sum(f.level == "warn" for f in findings))))
    return 1 if failed else 0


# The GPS check of the setup (`tcu doctor --gps ...`): tools/doctor_checks.py has the others.

def device_access(path: str) -> Finding | None:
    """FAIL if this user cannot open the device read-write, with the group to join; None if it can."""
    if os.access(path, os.R_OK | os.W_OK):
        return None
    info = os.stat(path)
    group = _group_name(info.st_gid)
    user = getpass.getuser()
    members = _group_members(info.st_gid)
    detail = "%s: permission denied (%s, group %s); %s" % (
        path, stat.filemode(info.st_mode), group, "user %s is in group %s but this login is not" % (user, group)
        if user in members else "user %s is not in group %s" % (user, group))
    remedy = ("log out and in again (or run `newgrp %s`)" % group if user in members
              else "sudo usermod -aG %s $USER, then log out and in again" % group)
    return Finding("gps", FAIL, detail, remedy)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _group_members(gid: int) -> set[str]:
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        members = set()
    members.update(p.pw_name for p in pwd.getpwall() if p.pw_gid == gid)
    return members


def check_gps(config: Config, window_s: float) -> Finding:
    spec = config.gps
    if spec.startswith("gpsd://"):
        from tcu.tools.doctor_gpsd import check_gpsd_source

        return check_gpsd_source(spec)
    if "://" not in spec:
        try:
            mode = os.stat(spec).st_mode
        except OSError as err:
            return Finding("gps", FAIL, "%s: %s" % (spec, err.strerror),
                           "plug the receiver in, or set gps.source / --gps; `tcu doctor` alone lists the "
                           "serial ports that speak NMEA")
        if stat.S_ISREG(mode):
            return _check_trace(spec)
        denied = device_access(spec)
        if denied is not None:
            return denied
    rates = [config.baud] if config.baud else list(BAUD_RATES)
    try:
        baud, data = detect_baud(spec, rates, window_s, enough=None)
    except SourceError as err:
        if config.baud:  # perhaps it talks at another rate
            try:
                other, _ = detect_baud(spec, [r for r in BAUD_RATES if r != config.baud], window_s)
            except SourceError:
                pass
            else:
                return Finding("gps", FAIL, "%s: no NMEA at %d baud, but NMEA at %d" % (spec, config.baud, other),
                               "set gps.baud = %d (or --baud %d), or \"auto\"" % (other, other))
        from tcu.tools.port_holders import held_by

        return Finding("gps", FAIL, "%s: %s" % (spec, err), held_by(spec) or
                       "check the cable and that the receiver outputs NMEA; a wrong --baud gives noise")
    talkers, fix = describe_nmea(data)
    detail = "%s: NMEA at %d baud, talkers %s, %s" % (spec, baud, ",".join(talkers) or "none",
                                                     {True: "fix", False: "no fix", None: "fix unknown"}[fix])
    if fix:
        return Finding("gps", OK, detail)
    return Finding("gps", WARN, detail, "give the antenna a clear view of the sky (a cold start takes minutes)"
                   if fix is False else "the receiver sends no RMC, GGA or GNS: enable them in its configuration")


def _check_trace(path: str) -> Finding:
    from tcu.hal import iter_fixes

    try:
        with iter_fixes(path) as fixes:
            count = sum(1 for _ in fixes)
    except TcuError as err:
        return Finding("gps", FAIL, "%s: %s" % (path, err), "give a recorded NMEA trace or a serial device")
    if not count:
        return Finding("gps", FAIL, "%s: a file with no fix in it" % path, "give a recorded NMEA trace with fixes")
    return Finding("gps", OK, "%s: a trace file, %d fixes (replayed, not live)" % (path, count))


def run(args: argparse.Namespace) -> int:
    if wants_setup(args):
        return run_setup(args)
    ports = candidates(args.ports)
    if not ports:
        print("tcu doctor: no serial ports found (%s); plug the receiver in (is it in `dmesg`?), name a port "
              "or URL (tcu doctor /dev/ttyX, socket://HOST:PORT), or check a setup (tcu doctor --gps SPEC)"
              % ", ".join(PATTERNS), file=sys.stderr)
        return 1
    found = 0
    for path in ports:
        report = probe_port(path, args.window)
        found += report["nmea"]
        print(json.dumps(report) if args.json else _text(report), flush=True)
    return 0 if found else 1
