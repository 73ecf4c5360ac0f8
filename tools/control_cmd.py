"""`tcu trigger`, `tcu status` and `tcu reload`: the tester's CLI on a running unit's control socket.

Standard library only (no paho, no cbor2, no HAL): the command starts and returns fast.
The socket speaks one JSON object per line each way; see emulator/daemon.py.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

from tcu.firmware.errors import LinkError, UsageError
from tcu.firmware.services import TRIGGERS_BY_NAME, trigger_code

DEFAULT_STATE = "tcu-state"


def default_control() -> str:
    return os.environ.get("TCU_CONTROL") or os.path.join(os.environ.get("TCU_STATE", DEFAULT_STATE), "control.sock")


def ask(path: str, request: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Send one request to the unit at path; its answer, or LinkError."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
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
        description="tcu trigger KIND | tcu trigger clear KIND | tcu trigger cancel KIND; KIND: %s" % names)
    trigger.add_argument("words", nargs="+", metavar="[clear|cancel] KIND")
    trigger.add_argument("--test", action="store_true",
                         help="crash or sos: a test call (the MSD's testCall), never counted as a real emergency")
    trigger.add_argument("--control", default=None, help="the unit's control socket (default: %s)" % default_control())
    trigger.set_defaults(run=run_trigger)
    status = subparsers.add_parser("status", help="the running unit's state, sessions, indicator, GPS, link, outbox")
    status.add_argument("--json", action="store_true", help="the whole status as JSON")
    status.add_argument("--control", default=None, help="the unit's control socket (default: %s)" % default_control())
    status.set_defaults(run=run_status)
    reload = subparsers.add_parser("reload", help="make the running unit re-read its config file (as SIGHUP)")
    reload.add_argument("--control", default=None, help="the unit's control socket (default: %s)" % default_control())
    reload.set_defaults(run=run_reload)


def parse_words(words: list[str]) -> tuple[str, str]:
    """['crash'] -> ('trigger', 'crash'); ['clear', 'theft'] -> ('clear', 'theft')."""
    if len(words) == 1:
        op, kind = "trigger", words[0]
    elif len(words) == 2 and words[0] in ("clear", "cancel"):
        op, kind = words
    else:
        raise UsageError("expected `tcu trigger KIND`, `tcu trigger clear KIND` or `tcu trigger cancel KIND`")
    trigger_code(kind)  # UsageError for an unknown one
    return op, kind


def run_trigger(args: argparse.Namespace) -> int:
    op, kind = parse_words(args.words)
    request: dict[str, Any] = {"op": op, "kind": kind}
    if args.test:
        if op != "trigger" or kind not in ("crash", "sos"):
            raise UsageError("--test: only `tcu trigger crash --test` or `tcu trigger sos --test`")
        request["test"] = True
    answer = ask(args.control or default_control(), request)
    if not answer.get("ok"):
        print("tcu trigger: refused: %s" % answer.get("error", "no reason given"), file=sys.stderr)
        return 1
    print("tcu trigger: %s %s%s: done; privacy indicator %s"
          % (op, kind, " (test call)" if args.test else "", "ON" if answer.get("indicator") else "off"))
    return 0


def run_status(args: argparse.Namespace) -> int:
    answer = ask(args.control or default_control(), {"op": "status"})
    status = answer.get("status", {})
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    print(format_status(status))
    return 0


def run_reload(args: argparse.Namespace) -> int:
    """What the reload applied and what waits for a restart; exit 1 if it was refused."""
    answer = ask(args.control or default_control(), {"op": "reload"}, timeout_s=30.0)
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
    lines.append("link: %s, %d acknowledged, outbox %d pending" % (
        "connected" if link.get("connected") else "offline", link.get("acked", 0), link.get("outbox", 0)))
    if link.get("problem"):
        lines.append("link: %s" % link["problem"])
    return "\n".join(lines)
