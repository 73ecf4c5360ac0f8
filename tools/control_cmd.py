"""`tcu trigger`, `tcu status` and `tcu reload`: the tester's CLI on a running unit's control socket.

Standard library only (no paho, no cbor2, no HAL): the command starts and returns fast.
The socket speaks one JSON object per line each way; see emulator/daemon.py.
"""

from __future__ import annotations

import _socket  # socket.py's wrappers (and the enum module they import) cost more than this whole request
import json
import os
import sys
from types import SimpleNamespace

from tcu.firmware.errors import LinkError, UsageError
from tcu.firmware.services import TRIGGERS_BY_NAME, trigger_code

TYPE_CHECKING = False
if TYPE_CHECKING:  # neither is imported at run time: `tcu trigger` starts as fast as it can
    import argparse
    from typing import Any

DEFAULT_STATE = "tcu-state"


def default_control() -> str:
    return os.environ.get("TCU_CONTROL") or os.path.join(os.environ.get("TCU_STATE", DEFAULT_STATE), "control.sock")


def ask(path: str, request: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Send one request to the unit at path; its answer, or LinkError."""
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
    except (FileNotFoundError, ConnectionRefusedError):
        raise LinkError("no unit is listening on %s (is `tcu run` running? --control or TCU_CONTROL)" % path) from None
    except OSError as err:
        raise LinkError("the unit's control socket %s: %s" % (path, err.strerror or err)) from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise LinkError("the unit at %s gave no answer" % path) from None
    if not isinstance(answer, dict):
        raise LinkError("the unit at %s answered %r" % (path, answer))
    return answer


def register(subparsers: argparse._SubParsersAction) -> None:
    names = ", ".join(sorted(TRIGGERS_BY_NAME))
    trigger = subparsers.add_parser(
        "trigger", help="raise, clear or cancel a trigger on the running unit",
        usage="tcu trigger [clear|cancel] KIND [--test] [--at WHEN] [--control PATH | --state DIR]\n"
              "       tcu trigger --script FILE | --unschedule [ID]  [--control PATH | --state DIR]",
        description="tcu trigger KIND | tcu trigger clear KIND | tcu trigger cancel KIND; KIND: %s. "
                    "--at and --script leave the schedule with the unit (tcu status lists it)" % names)
    trigger.add_argument("words", nargs="*", metavar="[clear|cancel] KIND")
    trigger.add_argument("--test", action="store_true",
                         help="crash or sos: a test call (the MSD's testCall), never counted as a real emergency")
    trigger.add_argument("--at", metavar="WHEN", help="later: +30, +5m, +1m30s from now, HH:MM[:SS] today "
                         "(local time) or an ISO 8601 time with offset; the unit keeps the schedule")
    trigger.add_argument("--script", metavar="FILE", help="a schedule, one `WHEN [clear|cancel] KIND [--test]` "
                         "a line (+30 crash, +60 clear crash, +90 theft), offsets from now")
    trigger.add_argument("--unschedule", nargs="?", const="all", metavar="ID",
                         help="drop scheduled trigger ID (no ID: all of them)")
    _where(trigger)
    trigger.set_defaults(run=run_trigger)
    status = subparsers.add_parser("status", help="the running unit's state, sessions, indicator, GPS, link, outbox")
    status.add_argument("--json", action="store_true", help="the whole status as JSON")
    _where(status)
    status.set_defaults(run=run_status)
    reload = subparsers.add_parser("reload", help="make the running unit re-read its config file (as SIGHUP)")
    _where(reload)
    reload.set_defaults(run=run_reload)


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", default=None, metavar="PATH",
                        help="the unit's control socket (default: %s)" % default_control())
    parser.add_argument("--state", default=None, metavar="DIR",
                        help="the unit's state directory (tcu run --state): its socket DIR/control.sock")


def control_of(args: argparse.Namespace | SimpleNamespace) -> str:
    if args.control and args.state:
        raise UsageError("give --control PATH or --state DIR, not both")
    return str(args.control or (os.path.join(args.state, "control.sock") if args.state else default_control()))


_FAST_OPTIONS = ("--control", "--state")


def fast_args(argv: list[str]) -> SimpleNamespace | None:
    """`tcu trigger ...` / `tcu status ...` parsed without argparse (its import is a large part
    of the start-up time); None for anything else (help, a typo, another option): argparse then."""
    command, rest = argv[0], argv[1:]
    values: dict[str, object] = {"command": command, "control": None, "state": None, "json": False, "test": False}
    words = []
    while rest:
        arg = rest.pop(0)
        name, eq, value = arg.partition("=")
        if name in _FAST_OPTIONS and (eq or rest):
            values[name[2:]] = value if eq else rest.pop(0)
        elif arg == "--json" and command == "status":
            values["json"] = True
        elif arg == "--test" and command == "trigger":
            values["test"] = True
        elif arg.startswith("-") or command != "trigger":
            return None
        else:
            words.append(arg)
    if command == "trigger":
        if not words:
            return None
        return SimpleNamespace(words=words, run=run_trigger, **values)
    return SimpleNamespace(run=run_status, **values) if command == "status" else None


def parse_words(words: list[str]) -> tuple[str, str]:
    """['crash'] -> ('trigger', 'crash'); ['clear', 'theft'] -> ('clear', 'theft')."""
    if len(words) == 1 and words[0] in ("clear", "cancel"):
        raise UsageError("`tcu trigger %s` needs the trigger to %s: tcu trigger %s KIND (KIND: %s)" % (
            words[0], words[0], words[0], ", ".join(sorted(TRIGGERS_BY_NAME))))
    if len(words) == 1:
        op, kind = "trigger", words[0]
    elif len(words) == 2 and words[0] in ("clear", "cancel"):
        op, kind = words
    else:
        raise UsageError("expected `tcu trigger KIND`, `tcu trigger clear KIND` or `tcu trigger cancel KIND`")
    trigger_code(kind)  # UsageError for an unknown one
    return op, kind


def run_trigger(args: argparse.Namespace | SimpleNamespace) -> int:
    if getattr(args, "at", None) or getattr(args, "script", None) or getattr(args, "unschedule", None):
        from tcu.tools.trigger_schedule import run_scheduled  # argparse path only: fast_args has none of these

        return run_scheduled(args)  # type: ignore[arg-type]
    op, kind = parse_words(args.words)
    request: dict[str, Any] = {"op": op, "kind": kind}
    if args.test:
        if op != "trigger" or kind not in ("crash", "sos"):
            raise UsageError("--test: only `tcu trigger crash --test` or `tcu trigger sos --test`")
        request["test"] = True
    control = control_of(args)
    answer = ask(control, request)
    if not answer.get("ok"):
        print("tcu trigger: refused: %s" % answer.get("error", "no reason given"), file=sys.stderr)
        return 1
    if op == "clear":  # a latched service (crash) outlives its input: say so, not "done"
        sessions = ask(control, {"op": "status"}).get("status", {}).get("sessions", [])
        still = [s for s in sessions if s.get("trigger") == kind]
        if still:
            print("tcu trigger: clear %s: the input is released, but session %s (%s) is latched: it runs to its "
                  "time bound; privacy indicator ON" % (kind, ", ".join(str(s["session"]) for s in still),
                                                        still[0].get("purpose")))
            return 0
    print("tcu trigger: %s %s%s: done; privacy indicator %s"
          % (op, kind, " (test call)" if args.test else "", "ON" if answer.get("indicator") else "off"))
    return 0


def run_status(args: argparse.Namespace | SimpleNamespace) -> int:
    answer = ask(control_of(args), {"op": "status"})
    status = answer.get("status", {})
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    print(format_status(status))
    return 0


def run_reload(args: argparse.Namespace) -> int:
    """What the reload applied and what waits for a restart; exit 1 if it was refused."""
    answer = ask(control_of(args), {"op": "reload"}, timeout_s=30.0)
    if not answer.get("ok"):
        print("tcu reload: refused: %s" % answer.get("error", "no reason given"), file=sys.stderr)
        return 1
    print("tcu reload: %s reloaded" % answer.get("config"))
    print("applied: %s" % (", ".join(answer.get("applied", [])) or "nothing (no change)"))
    if answer.get("needs_restart"):
        print("needs a restart (running values kept): %s" % ", ".join(answer["needs_restart"]))
    if any(key.startswith("services.") for key in answer.get("applied", [])):
        print("note: %s" % answer.get("note", ""))
    return 0


def format_status(status: dict[str, Any]) -> str:
    gps, link = status.get("gps", {}), status.get("link", {})
    lines = [
        "unit %s (boot %s): %s" % (status.get("unit"), status.get("boot"), status.get("state")),
        "privacy indicator: %s" % ("ON" if status.get("indicator") else "off"),
    ]
    for s in status.get("sessions", []):
        lines.append("  session %d %s (%s): %d samples, ends in %d s" % (
            s["session"], s["purpose"], s["trigger"], s["samples"], s["ends_in_s"]))
    age = gps.get("last_fix_age_s")
    lines.append("gps %s: %s, %s, last fix %s" % (
        gps.get("source"), "receiving" if gps.get("alive") else "silent", "fix" if gps.get("has_fix") else "no fix",
        "never" if age is None else "%.1f s ago" % age))
    if gps.get("reason"):
        lines.append("gps: %s" % gps["reason"])
    lines.append("link: %s, %d acknowledged, outbox %d pending" % (
        "connected" if link.get("connected") else "offline", link.get("acked", 0), link.get("outbox", 0)))
    if link.get("problem"):
        lines.append("link: %s" % link["problem"])
    scheduled = status.get("scheduled") or {}
    for e in scheduled.get("pending", []):  # emulator/schedule.py
        lines.append("scheduled #%d: %s %s%s in %.0f s" % (e["id"], e["op"], e["kind"], " (test call)" if e["test"]
                                                          else "", e["in_s"]))
    for e in scheduled.get("fired", []):
        lines.append("fired #%d: %s %s: %s" % (e["id"], e["op"], e["kind"], e["result"]))
    clock = status.get("time")
    if clock:
        lines.append(format_time(clock))
    return "\n".join(lines)


_SOURCE_TEXT = {"gnss": "GNSS (a valid fix with a date)", "ntp": "system clock, NTP-synchronised",
                "system": "system clock, not synchronised"}


def format_time(clock: dict[str, Any]) -> str:
    """The unit's wall time, its source and whether it is trusted (README: Two clocks)."""
    import datetime  # here, not at the top: `tcu trigger` imports as little as it can

    when = datetime.datetime.fromtimestamp(clock.get("now", 0), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = "time: %s from the %s: %s" % (when, _SOURCE_TEXT.get(clock.get("source", ""), clock.get("source")),
                                          "trusted" if clock.get("trusted") else
                                          "NOT trusted (backend command windows are not checked against it)")
    if clock.get("rollovers_corrected"):
        text += "; %d GPS week rollovers corrected" % clock["rollovers_corrected"]
    return text
