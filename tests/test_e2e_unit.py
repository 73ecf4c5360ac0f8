"""Issue 7's end-to-end test: every part a real process, as a tester runs them.

`tcu replay-serial --retime --loop` plays a recorded u-blox trace into a pty at 1 Hz (times
moved to now), `tcu run` reads it as its serial GPS, a real Mosquitto carries the uplinks,
`tcu backend --store` keeps them in SQLite. Each scenario drives the unit with `tcu trigger`
or a signed `tcu backend command lawful-request`, follows it in `tcu status --json`, and
reads the store back: located reports must be the trace's own fixes at their retimed times,
and none may fall outside its sessions' windows (the privacy promise).

Each test gets a fresh set of processes (a unit that has seen a crash stays in it for 10
minutes: the occupant cannot cancel it). The trace is 72 s long; every test ends well
before it loops, so one retime offset holds for a whole test.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import stop, tcu

from tcu.protocol import messages
from tcu.tools.sessions import Session, load_sessions

TRACE = "ublox-8.log"  # a u-blox M8 standing still: 72 one-second fixes, every position distinct
Position = tuple[int, int]  # lat, lon in 1e-7 degrees, as on the wire
UNITS = itertools.count(1)  # a unit id per test: the store and the broker may hold earlier ones


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll until condition() is truthy and return it; fail the test with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail("timed out after %.0f s waiting for %s" % (timeout, what or "a condition"))


def spawn(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A `tcu` subprocess, its output to a file (a pipe nobody reads could block it)."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", *args], stdout=out, stderr=subprocess.STDOUT)


def unix_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def trace_fixes(traces: Path) -> dict[Position, int]:
    """The trace's fixes as `tcu fixes --json` reads them: position -> seconds after the first fix."""
    result = tcu("fixes", str(traces / TRACE), "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    fixes = [json.loads(line) for line in result.stdout.splitlines()]
    seconds = [unix_s(f["time"]) - unix_s(fixes[0]["time"]) for f in fixes]
    assert len(fixes) > 60 and seconds == list(range(len(fixes))), "not a steady 1 Hz trace"
    table = {(round(f["lat"] * 1e7), round(f["lon"] * 1e7)): i for i, f in enumerate(fixes)}
    assert len(table) == len(fixes), "positions must tell the fixes apart"
    return table


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("backend-keys")  # keygen needs the folder to exist
    result = tcu("backend", "keygen", "--out", str(folder))
    assert result.returncode == 0, result.stderr
    return folder


class Rig:
    """One unit under test with its GPS replay and its backend, all real processes."""

    def __init__(self, tmp: Path, broker: str, unit: str, trace: Path, keys: Path) -> None:
        self.tmp, self.broker, self.unit, self.keys = tmp, broker, unit, keys
        self.control, self.store, self.led = str(tmp / "control.sock"), tmp / "store.db", tmp / "privacy-led"
        self.trace = trace
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # started in this order, stopped in reverse
        self.replay_started = self.first_fix_seen = 0.0

    def start(self) -> None:
        tmp, gps = self.tmp, self.tmp / "gps"
        self._spawn("replay-serial", str(self.trace), "--retime", "--loop", "--link", str(gps))
        wait_until(lambda: os.path.lexists(gps) or self._died(), what="the replay's pty link")
        # The replay retimes the trace's first fix to the second it starts playing, just after making the link
        self.replay_started = os.lstat(gps).st_mtime
        self._spawn("backend", "--broker", self.broker, "--store", str(self.store), "--json",
                    "--client-id", "e2e-backend-%s" % self.unit)
        wait_until(lambda: b"subscribed" in (tmp / "backend.log").read_bytes() or self._died(),
                   what="the backend's subscription")
        self._spawn("run", "--broker", self.broker, "--gps", str(gps), "--baud", "9600", "--unit", self.unit,
                    "--state", str(tmp / "state"), "--control", self.control, "--indicator", "file:%s" % self.led,
                    "--backend-key", str(self.keys / "backend.pub"))
        wait_until(lambda: os.path.exists(self.control) or self._died(), what="the unit's control socket")
        # Trusted time too: a short signed request is refused on untrusted time (README: Two clocks)
        wait_until(lambda: (s := self.status())["gps"]["has_fix"] and s["time"]["trusted"] and s["link"]["connected"]
                   or self._died(), what="a GPS fix (and its time) from the replay and the broker connected")
        self.first_fix_seen = time.time()  # the replay's first fix was written before this

    def _spawn(self, command: str, *args: str) -> None:
        self.procs[command] = spawn(self.tmp / ("%s.log" % command), command, *args)

    def _died(self) -> bool:
        for command, proc in self.procs.items():
            if proc.poll() is not None:
                logs = "\n".join(f.read_text(errors="replace") for f in sorted(self.tmp.glob("*.log")))
                pytest.fail("tcu %s exited %s:\n%s" % (command, proc.returncode, logs))
        return False

    def status(self) -> dict[str, Any]:
        result = tcu("status", "--json", "--control", self.control)
        assert result.returncode == 0, result.stderr
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def purposes(self) -> list[str]:
        return [s["purpose"] for s in self.status()["sessions"]]

    def trigger(self, *words: str) -> subprocess.CompletedProcess[str]:
        return tcu("trigger", *words, "--control", self.control)

    def sessions(self) -> dict[str, Session]:
        """This unit's sessions in the backend's store, by purpose (one each per test)."""
        if not self.store.exists():
            return {}
        return {s.purpose or "?": s for s in load_sessions(str(self.store)) if s.unit == self.unit}

    def received(self) -> dict[tuple[int, int], float]:
        """(session, dt) of each located report -> when the backend stored it."""
        with contextlib.closing(sqlite3.connect("file:%s?mode=ro" % self.store, uri=True)) as db:
            rows = db.execute("SELECT payload, received FROM uplinks WHERE unit = ?", (self.unit,)).fetchall()
        found = {}
        for payload, when in rows:
            msg = messages.decode(bytes(payload))
            if msg.type == messages.T_REPORT:
                found[(msg.sid, msg.dt)] = when
        return found

    def wait_past(self, moment: float) -> None:
        """Until the clock is past `moment` with the GPS still heard. Showing that nothing
        was sent takes a stretch of time; a dormant unit does not even decode its fixes,
        so `alive` (heard in the last 3 s) is what shows the receiver went on."""
        wait_until(lambda: time.time() > moment and self.status()["gps"]["alive"], timeout=moment - time.time() + 10,
                   what="the GPS still heard after %.1f" % moment)

    def close(self) -> None:
        for proc in reversed(self.procs.values()):  # the unit first: it ends its sessions while the backend listens
            stop(proc)


@pytest.fixture
def rig(mosquitto, traces: Path, keys: Path, tmp_path: Path) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    unit = "e2e-%d-%d" % (os.getpid(), next(UNITS))
    rig = Rig(tmp_path, mosquitto.url, unit, traces / TRACE, keys)
    try:
        rig.start()
        yield rig
    finally:
        rig.close()


def assert_located_from_the_trace(rig: Rig, session: Session, trace_fixes: dict[Position, int]) -> None:
    """Each report is a trace fix, stamped with that fix's retimed second: the second the
    replay started plus the fix's place in the trace; and it reached the store within 5 s."""
    received = rig.received()
    starts = set()
    for point in session.points:
        when = session.time_of(point)
        assert when is not None
        assert (point.lat_e7, point.lon_e7) in trace_fixes, "a position the trace never had: %s" % point
        starts.add(when - trace_fixes[(point.lat_e7, point.lon_e7)])
        stored = received.get((point.sid, point.dt))
        assert stored is not None and abs(stored - when) < 5, (point, stored)
    # The replay took its start from the clock right after making its pty link (microseconds:
    # 0.25 s is ample), so its first second is the link's, or the next if a second began since.
    began = rig.replay_started
    allowed = {math.floor(began), math.floor(min(began + 0.25, rig.first_fix_seen))}
    assert len(starts) == 1 and starts <= allowed, "reports out of step with the trace: %s, %s" % (starts, allowed)


def assert_no_report_outside_sessions(rig: Rig) -> None:
    """The privacy promise: a report is sent only for sessions it falls within."""
    now = time.time()
    for session in rig.sessions().values():
        for point in session.points:
            when = session.time_of(point)
            assert session.start_s is not None and when is not None, "a report for a session never started"
            end = session.end_s if session.end_s is not None else now
            assert session.start_s <= when <= end, "report at %s outside %s" % (when, session.summary())


def test_a_dormant_unit_shows_its_gps_and_sends_nothing(rig: Rig) -> None:
    status = rig.status()
    assert (status["state"], status["indicator"], status["sessions"]) == ("dormant", False, [])
    assert status["gps"]["alive"] and status["gps"]["has_fix"] and status["link"]["connected"]
    assert rig.led.read_text() == "0\n"
    rig.wait_past(time.time() + 2)  # the GPS kept going...
    assert rig.sessions() == {} and rig.received() == {}  # ...and not one fix left the unit
    # No position was decoded, yet the receiver's own fix flag keeps the GPS health current.
    assert rig.status()["gps"]["last_fix_age_s"] < 2.5


def test_a_crash_sends_located_reports_from_the_trace(rig: Rig, trace_fixes: dict[Position, int]) -> None:
    result = rig.trigger("crash")
    assert result.returncode == 0 and "privacy indicator ON" in result.stdout, result.stderr
    status = rig.status()
    assert status["state"] == "active" and status["indicator"] and rig.led.read_text() == "1\n"
    [active] = status["sessions"]
    assert (active["trigger"], active["purpose"]) == ("crash", "crash_notification")

    crash = wait_until(lambda: (s := rig.sessions().get("crash_notification")) and len(s.points) >= 3 and s,
                       what="three crash reports in the store")
    assert (crash.sid, crash.start_s, crash.end_s) == (active["session"], active["started"], None)
    assert_located_from_the_trace(rig, crash, trace_fixes)
    assert all(p.speed_kmh is not None and p.alt_m is not None for p in crash.points)  # crash: all fields
    assert_no_report_outside_sessions(rig)


def test_theft_starts_tracking_and_clearing_it_ends_it(rig: Rig, trace_fixes: dict[Position, int]) -> None:
    assert rig.trigger("theft").returncode == 0
    status = rig.status()
    assert status["indicator"] and [(s["trigger"], s["purpose"]) for s in status["sessions"]] == [
        ("theft", "theft_tracking")]
    theft = wait_until(lambda: (s := rig.sessions().get("theft_tracking")) and s.points and s,
                       what="a theft report in the store")
    assert_located_from_the_trace(rig, theft, trace_fixes)

    result = rig.trigger("clear", "theft")
    assert result.returncode == 0 and "privacy indicator off" in result.stdout
    status = rig.status()
    assert (status["state"], status["indicator"], status["sessions"]) == ("dormant", False, [])
    assert rig.led.read_text() == "0\n"
    ended = wait_until(lambda: (s := rig.sessions()["theft_tracking"]).end_s is not None and s,
                       what="the theft session's end in the store")
    assert ended.reason == "trigger_cleared"
    rig.wait_past(ended.end_s + 2)  # fixes went on after the end: none may be sent
    assert_no_report_outside_sessions(rig)


def test_a_signed_lawful_request_tracks_until_it_expires(rig: Rig, trace_fixes: dict[Position, int]) -> None:
    sent = tcu("backend", "command", "lawful-request", "--broker", rig.broker, "--unit", rig.unit,
               "--case", "court-order-7", "--for", "3s", "--key", str(rig.keys / "backend.key"))
    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: rig.purposes() == ["lawful_request"], what="the lawful request in status")
    assert rig.status()["indicator"]
    lawful = wait_until(lambda: (s := rig.sessions().get("lawful_request")) and s.points and s,
                        what="a lawful-request report in the store")
    assert lawful.case == "court-order-7" and lawful.trigger == "lawful"
    assert_located_from_the_trace(rig, lawful, trace_fixes)
    assert all(p.speed_kmh is None and p.alt_m is None for p in lawful.points)  # position only

    wait_until(lambda: rig.purposes() == [], what="the lawful request to expire")
    status = rig.status()
    assert (status["state"], status["indicator"]) == ("dormant", False)
    ended = wait_until(lambda: (s := rig.sessions()["lawful_request"]).end_s is not None and s,
                       what="the lawful request's end in the store")
    # the 3 s asked for (whole seconds at both ends, and the unit's tick), not the service's 24 h
    assert ended.reason == "time_bound" and abs(ended.end_s - (ended.start_s or 0) - 3) <= 1
    rig.wait_past(ended.end_s + 2)
    assert_no_report_outside_sessions(rig)


def test_the_occupant_cannot_cancel_a_crash_notification(rig: Rig) -> None:
    assert rig.trigger("crash").returncode == 0
    refused = rig.trigger("cancel", "crash")
    assert refused.returncode == 1
    assert "refused" in refused.stderr and "occupant cannot cancel" in refused.stderr, refused.stderr
    assert rig.purposes() == ["crash_notification"] and rig.status()["indicator"]
    crash = wait_until(lambda: rig.sessions().get("crash_notification"), what="the crash session in the store")
    assert crash.end_s is None
    assert_no_report_outside_sessions(rig)
