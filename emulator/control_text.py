"""The control socket's text replies: what `tcu trigger`, `tcu status` and `tcu reload` print,
formatted by the unit, so that the client prints it without parsing anything.

A request carrying "format": "text" (the human lines) or "format": "json" (the status document,
indented) is answered by one frame instead of a JSON line:

    b"text EXIT STREAM LENGTH\\n" followed by LENGTH bytes of UTF-8 text

EXIT is the client's exit status (0 done, 1 refused), STREAM is "out" or "err". A request
without "format" gets the JSON line it always got. `tcu`'s client reads the frame with nothing
but _socket (no json, hence no re, no enum: README, "Spawn time"); talking to an older unit,
which answers JSON to any request, it renders the same lines itself with render().
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

FORMATS = ("text", "json")
COMMAND_OF = {"trigger": "trigger", "clear": "trigger", "cancel": "trigger", "status": "status", "reload": "reload"}


def frame(exit_code: int, stream: str, text: str) -> bytes:
    body = text.encode()
    return b"text %d %s %d\n" % (exit_code, stream.encode(), len(body)) + body


def render(request: dict[str, Any], answer: dict[str, Any],
           status: Callable[[], dict[str, Any]]) -> tuple[int, str, str]:
    """(exit status, "out" or "err", the lines) for the answer to request; status() is asked
    only after a clear, whose trigger may still hold a latched session."""
    op = request.get("op")
    if not answer.get("ok"):
        return 1, "err", "tcu %s: refused: %s\n" % (COMMAND_OF.get(str(op), "control"),
                                                    answer.get("error", "no reason given"))
    if op == "status":
        document = answer.get("status", {})
        text = json.dumps(document, indent=1) if request.get("format") == "json" else format_status(document)
        return 0, "out", text + "\n"
    if op == "reload":
        return 0, "out", reload_lines(answer)
    return 0, "out", trigger_line(request, answer, status) + "\n"


def trigger_line(request: dict[str, Any], answer: dict[str, Any], status: Callable[[], dict[str, Any]]) -> str:
    op, kind, test = request.get("op"), request.get("kind"), request.get("test") is True
    if op == "clear":  # a latched service (crash) outlives its input: say so, not "done"
        still = [s for s in status().get("sessions", []) if s.get("trigger") == kind]
        if still:
            return ("tcu trigger: clear %s: the input is released, but session %s (%s) is latched: it runs to its "
                    "time bound; privacy indicator ON" % (kind, ", ".join(str(s["session"]) for s in still),
                                                          still[0].get("purpose")))
    return "tcu trigger: %s %s%s: done; privacy indicator %s" % (
        op, kind, " (test call)" if test else "", "ON" if answer.get("indicator") else "off")


def reload_lines(answer: dict[str, Any]) -> str:
    """What the reload applied and what waits for a restart."""
    lines = ["tcu reload: %s reloaded" % answer.get("config"),
             "applied: %s" % (", ".join(answer.get("applied", [])) or "nothing (no change)")]
    if answer.get("needs_restart"):
        lines.append("needs a restart (running values kept): %s" % ", ".join(answer["needs_restart"]))
    if any(key.startswith("services.") for key in answer.get("applied", [])):
        lines.append("note: %s" % answer.get("note", ""))
    return "\n".join(lines) + "\n"


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
    when = datetime.datetime.fromtimestamp(clock.get("now", 0), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = "time: %s from the %s: %s" % (when, _SOURCE_TEXT.get(clock.get("source", ""), clock.get("source")),
                                          "trusted" if clock.get("trusted") else
                                          "NOT trusted (backend command windows are not checked against it)")
    if clock.get("rollovers_corrected"):
        text += "; %d GPS week rollovers corrected" % clock["rollovers_corrected"]
    return text
