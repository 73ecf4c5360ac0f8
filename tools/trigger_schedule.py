"""`tcu trigger KIND --at WHEN`, `tcu trigger --script FILE`, `tcu trigger --unschedule [ID]`.

WHEN is an offset from now, `+30`, `+90s`, `+5m`, `+1h`, `+1m30s`, or an absolute time:
`HH:MM[:SS]` (this machine's local time, today) or ISO 8601 with its offset
(`2026-12-02T21:30:00Z`). An absolute time is turned into an offset here, on this machine's
clock, when the command runs; from then on the unit counts it on its own monotonic clock
(emulator/schedule.py), so a later wall-clock jump does not move it. Each bad time is one line:
`+0` (now is not a schedule: leave --at out), a time already past, more than 24 h ahead.

A script has one entry per line, `WHEN [clear|cancel] KIND [--test]`, `#` comments and blank
lines ignored; its offsets count from when the script is sent, all at once, so the entries keep
their spacing. A script with any bad line is refused whole, each bad line named.

The argparse path of `tcu trigger` only: the fast path (tools/control_cmd.py fast_args) never
imports this module.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tcu.emulator.schedule import MAX_DELAY_S
from tcu.firmware.errors import UsageError
from tcu.tools.control_cmd import control_of, parse_words
from tcu.tools.control_json import ask

_OFFSET = re.compile(r"^\+(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(?::\d{2})?$")


def delay_of(when: str, now: datetime | None = None) -> float:
    """Seconds from now until WHEN (see the module's doc); UsageError in one line."""
    now = now or datetime.now().astimezone()
    text = when.strip()
    if text.startswith("+"):
        match = _OFFSET.match(text)
        if not match or text == "+":
            raise UsageError("%r: not an offset like +30, +90s, +5m, +1h or +1m30s" % when)
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        delay = hours * 3600 + minutes * 60 + seconds
        if delay <= 0:
            raise UsageError("%r: a trigger at +0 is one now: give a positive offset, or leave --at out" % when)
    else:
        delay = (_absolute(text, when, now) - now).total_seconds()
        if delay <= 0:
            raise UsageError("%r is in the past (it is %s now; for a time tomorrow give the date, "
                             "2026-12-03T09:00:00+01:00)" % (when, now.strftime("%H:%M:%S")))
    if delay > MAX_DELAY_S:
        raise UsageError("%r: at most %d h ahead (a schedule lives in the running unit only)"
                         % (when, MAX_DELAY_S // 3600))
    return delay


def _absolute(text: str, when: str, now: datetime) -> datetime:
    try:
        if _CLOCK.match(text):  # today, this machine's local time
            parts = [int(p) for p in text.split(":")] + [0]
            return now.replace(hour=parts[0], minute=parts[1], second=parts[2], microsecond=0)
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UsageError("%r: expected +SECONDS (+30, +5m), HH:MM[:SS] today, or an ISO 8601 time with its "
                         "offset (2026-12-02T21:30:00Z)" % when)
    return moment


def entry(words: list[str], test: bool, when: str, now: datetime | None = None) -> dict[str, Any]:
    """One schedule entry of the control socket's schedule op."""
    op, kind = parse_words(words)
    if test and (op != "trigger" or kind not in ("crash", "sos")):
        raise UsageError("--test: only `crash --test` or `sos --test`")
    text = "%s %s%s" % (when, " ".join(words), " --test" if test else "")
    return {"in_s": round(delay_of(when, now), 3), "op": op, "kind": kind, "test": test, "text": text}


def read_script(path: str, now: datetime | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries of a script file, and one error line per bad line."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError("cannot read the script %s: %s" % (path, getattr(err, "strerror", None) or err)) from None
    now = now or datetime.now().astimezone()
    entries, errors = [], []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        test = "--test" in words
        rest = [w for w in words if w != "--test"]
        try:
            if len(rest) < 2:
                raise UsageError("expected WHEN [clear|cancel] KIND [--test], e.g. +30 crash")
            entries.append(entry(rest[1:], test, rest[0], now))
        except UsageError as err:
            errors.append("%s:%d: %s" % (path, number, err))
    if not entries and not errors:
        errors.append("%s: no entries (lines like `+30 crash`, `+60 clear crash`)" % path)
    return entries, errors


def run_scheduled(args: argparse.Namespace) -> int:
    if args.unschedule is not None:
        return _unschedule(args)
    if args.script and (args.words or args.at):
        raise UsageError("--script FILE takes its triggers and times from the file: no KIND or --at beside it")
    if args.script:
        entries, errors = read_script(args.script)
        for line in errors:
            print("tcu trigger: %s" % line, file=sys.stderr)
        if errors:
            return 2
    else:
        entries = [entry(args.words, args.test, args.at)]
    answer = ask(control_of(args), {"op": "schedule", "entries": entries})
    if not answer.get("ok"):
        print("tcu trigger: refused: %s" % answer.get("error", "no reason given"), file=sys.stderr)
        return 1
    for item in answer.get("scheduled", []):
        due = time.strftime("%H:%M:%S", time.localtime(time.time() + item["in_s"]))
        print("tcu trigger: scheduled #%d: %s %s%s at %s (in %g s, on the unit's clock)" % (
            item["id"], item["op"], item["kind"], " (test call)" if item["test"] else "", due, item["in_s"]))
    print("tcu trigger: `tcu status` lists what waits; `tcu trigger --unschedule [ID]` drops it")
    return 0


def _unschedule(args: argparse.Namespace) -> int:
    if args.words or args.at or args.script:
        raise UsageError("--unschedule [ID] stands alone (no KIND, --at or --script)")
    request: dict[str, Any] = {"op": "unschedule"}
    if args.unschedule != "all":
        if not args.unschedule.lstrip("#").isdigit():
            raise UsageError("--unschedule %r: a scheduled trigger's number (tcu status lists them), or nothing "
                             "for all" % args.unschedule)
        request["id"] = int(args.unschedule.lstrip("#"))
    answer = ask(control_of(args), request)
    if not answer.get("ok"):
        print("tcu trigger: refused: %s" % answer.get("error", "no reason given"), file=sys.stderr)
        return 1
    dropped = answer.get("unscheduled", [])
    names = ", ".join("#%d" % i for i in dropped)
    print("tcu trigger: unscheduled %s" % (names or "nothing (none waited)"))
    return 0
