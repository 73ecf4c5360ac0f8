"""Scheduled triggers of a running unit (`tcu trigger crash --at +30`, `tcu trigger --script FILE`).

The schedule lives in the unit, not in a sleeping client: it survives the tester's terminal
closing, `tcu status` lists it, and `tcu trigger --unschedule [ID]` drops it. Each entry is a
delay counted on the unit's monotonic clock from when it was received (a wall-clock jump moves
nothing); an absolute time was turned into a delay by the client. When an entry is due, it is
the same request as `tcu trigger` on the control socket, so it is refused or done the same way;
what happened is one line on the unit's stderr and stays in `tcu status` (the last few).

Memory only: a restarted unit has no schedule, so a crash nobody remembers scheduling never
fires after a restart.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from tcu.firmware.services import TRIGGERS_BY_NAME

OPS = ("trigger", "clear", "cancel")
MAX_DELAY_S = 86_400  # a test session's day
MAX_PENDING = 100
KEPT_FIRED = 10  # how many fired entries `tcu status` still shows


class Entry:
    __slots__ = ("id", "due_s", "op", "kind", "test", "text", "answer")

    def __init__(self, id_: int, due_s: float, op: str, kind: str, test: bool, text: str) -> None:
        self.id = id_
        self.due_s = due_s
        self.op = op
        self.kind = kind
        self.test = test
        self.text = text
        self.answer: dict[str, Any] | None = None  # the control answer once fired

    def as_dict(self, now_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "op": self.op, "kind": self.kind, "test": self.test,
                               "text": self.text}
        if self.answer is None:
            out["in_s"] = round(max(0.0, self.due_s - now_s), 1)
        else:
            out["ok"] = bool(self.answer.get("ok"))
            out["result"] = "done" if out["ok"] else str(self.answer.get("error", "refused"))
        return out


def _entry_error(item: Any) -> str | None:
    """Why one requested entry is not acceptable, None when it is."""
    if not isinstance(item, dict):
        return "an entry is a JSON object"
    delay = item.get("in_s")
    if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 < delay <= MAX_DELAY_S:
        return "in_s must be a number of seconds above 0 and at most %d, not %r" % (MAX_DELAY_S, delay)
    if item.get("op") not in OPS or item.get("kind") not in TRIGGERS_BY_NAME:
        return "unknown trigger request %r" % ({k: item.get(k) for k in ("op", "kind")},)
    if item.get("test", False) is True and (item.get("op") != "trigger" or item.get("kind") not in ("crash", "sos")):
        return "only a crash or sos trigger can be a test call"
    return None


class TriggerSchedule:
    """fire(request) carries out one control request and answers it (UnitDaemon.request);
    now_s() is the unit's monotonic clock in seconds."""

    def __init__(self, fire: Callable[[dict[str, Any]], dict[str, Any]], now_s: Callable[[], float],
                 log: Callable[[str], None] | None = None) -> None:
        self._fire = fire
        self._now_s = now_s
        self._log = log or (lambda text: print("tcu run: %s" % text, file=sys.stderr, flush=True))
        self._pending: list[Entry] = []
        self._fired: list[Entry] = []
        self._next_id = 1
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tcu-schedule", daemon=True)
        self._thread.start()

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The control socket's schedule / unschedule ops; never raises."""
        if request.get("op") == "unschedule":
            return self.unschedule(request.get("id"))
        entries = request.get("entries")
        if not isinstance(entries, list) or not entries:
            return {"ok": False, "error": "schedule needs a non-empty list of entries"}
        for index, item in enumerate(entries):
            error = _entry_error(item)
            if error:
                return {"ok": False, "error": "entry %d: %s" % (index + 1, error)}  # none is kept
        with self._cond:
            if len(self._pending) + len(entries) > MAX_PENDING:
                return {"ok": False, "error": "at most %d scheduled triggers wait at once (%d do)"
                        % (MAX_PENDING, len(self._pending))}
            now = self._now_s()
            added = []
            for item in entries:
                entry = Entry(self._next_id, now + float(item["in_s"]), item["op"], item["kind"],
                              item.get("test", False) is True, str(item.get("text", ""))[:120])
                self._next_id += 1
                added.append(entry)
            self._pending.extend(added)
            self._pending.sort(key=lambda e: (e.due_s, e.id))
            self._cond.notify_all()
            return {"ok": True, "scheduled": [e.as_dict(now) for e in added]}

    def unschedule(self, id_: Any) -> dict[str, Any]:
        """Drop one pending entry by id, or all of them (id None)."""
        with self._cond:
            if id_ is None:
                dropped, self._pending = self._pending, []
            else:
                dropped = [e for e in self._pending if e.id == id_]
                if not dropped:
                    return {"ok": False, "error": "no scheduled trigger #%s is waiting (tcu status lists them)" % id_}
                self._pending = [e for e in self._pending if e.id != id_]
            self._cond.notify_all()
        return {"ok": True, "unscheduled": [e.id for e in dropped]}

    def status(self) -> dict[str, list[dict[str, Any]]]:
        with self._cond:
            now = self._now_s()
            return {"pending": [e.as_dict(now) for e in self._pending],
                    "fired": [e.as_dict(now) for e in self._fired]}

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._pending or self._pending[0].due_s > self._now_s()):
                    self._cond.wait(None if not self._pending else max(0.0, self._pending[0].due_s - self._now_s()))
                if self._closed:
                    return
                entry = self._pending.pop(0)
            self._carry_out(entry)

    def _carry_out(self, entry: Entry) -> None:
        request: dict[str, Any] = {"op": entry.op, "kind": entry.kind}
        if entry.test:
            request["test"] = True
        answer = self._fire(request)
        with self._cond:
            entry.answer = answer
            self._fired = (self._fired + [entry])[-KEPT_FIRED:]
        what = "%s %s%s" % (entry.op, entry.kind, " (test call)" if entry.test else "")
        if answer.get("ok"):
            self._log("scheduled #%d (%s) fired: %s; privacy indicator %s"
                      % (entry.id, entry.text or what, what, "ON" if answer.get("indicator") else "off"))
        else:
            self._log("scheduled #%d (%s) refused: %s" % (entry.id, entry.text or what, answer.get("error")))

    def close(self) -> None:
        """Nothing fires after this (the unit is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(5)
