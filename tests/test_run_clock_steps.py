"""Issue 13: the real `tcu run` process with its wall clock stepped under it (+1 day, -1 year,
back to 1970) by libfaketime while a crash, a theft and backend-requested sessions run; a
receiver on a pty the test drives, a real Mosquitto, the control socket for triggers. What
reaches the broker is decoded: each session ends at its bound on the monotonic clock with
bound / period (+1) located reports and none after, start and end carry the time source the
unit really had, the audit log keeps every disclosure at its GNSS time, `tcu status` shows the
source and the trust. The machine's own clock is never touched (tests/faketime_rig.py).

While the receiver has a fix with a date, wall time is GNSS time and a system-clock step must
change nothing; it matters before the first fix (a Pi booting in 1970), in a tunnel, and for
a signed command received on untrusted time, whose tracking must never pass the signed `until`.
The expected source of system time follows the kernel's NTP state, which the unit asks too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faketime_rig import DAY_S, YEAR_S, Peer, Receiver, SteppedClock, libfaketime, run_unit
from test_e2e_unit import stop, tcu, wait_until

from tcu.emulator.audit import AuditLog, verify
from tcu.emulator.wallclock import ntp_synchronised
from tcu.firmware import transitions as tr
from tcu.firmware.services import CRASH, LAWFUL, STOLEN, THEFT
from tcu.protocol import commands as cmd
from tcu.protocol import cose
from tcu.protocol import messages as m

CRASH_BOUND_S, THEFT_BOUND_S = 10, 30  # periods 2 s and 10 s (the built-in ones)
CONFIG = "[services.crash]\nbound_s = %d\n[services.theft]\nbound_s = %d\n" % (CRASH_BOUND_S, THEFT_BOUND_S)
BOOT_1970 = 1000  # the clock a Raspberry Pi without a real-time clock may boot with


class Unit:
    def __init__(self, tmp: Path, broker: str, *extra: str) -> None:
        libfaketime()  # skips before anything starts when it is missing
        self.tmp, self.id = tmp, "clock-%d-%d" % (os.getpid(), time.monotonic_ns() % 100000)
        self.clock, self.gps = SteppedClock(tmp), Receiver()
        self.control, self.state = str(tmp / "control.sock"), tmp / "state"
        (tmp / "tcu.toml").write_text(CONFIG)
        self.peer = Peer(broker, self.id)
        self.extra, self.broker = extra, broker
        self.ntp = ntp_synchronised()  # the kernel's answer, the same the unit gets
        self.proc: Any = None

    def start(self) -> None:
        self.proc = run_unit(self.tmp / "run.log", self.clock.env(), "--config", str(self.tmp / "tcu.toml"),
                             "--broker", self.broker, "--gps", self.gps.path, "--baud", "9600", "--unit", self.id,
                             "--state", str(self.state), "--control", self.control, *self.extra)
        wait_until(lambda: os.path.exists(self.control) or self._died(), what="the unit's control socket")
        wait_until(lambda: (s := self.status())["gps"]["alive"] and s["link"]["connected"] or self._died(),
                   what="the receiver heard and the broker connected")

    def _died(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail("tcu run exited %s:\n%s" % (self.proc.returncode, (self.tmp / "run.log").read_text()))
        return False

    def status(self) -> dict[str, Any]:
        result = tcu("status", "--json", "--control", self.control)
        assert result.returncode == 0, result.stderr
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def trigger(self, kind: str) -> tuple[float, float]:
        """The (monotonic) moments just before and after the trigger: its session starts between."""
        before = time.monotonic()
        result = tcu("trigger", kind, "--control", self.control)
        assert result.returncode == 0, result.stderr
        return before, time.monotonic()

    @property
    def system_source(self) -> tuple[str, int]:
        return ("ntp", m.TIME_NTP) if self.ntp else ("system", m.TIME_SYSTEM)

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        self.peer.close()
        self.gps.close()


@pytest.fixture
def unit(mosquitto, tmp_path: Path) -> Iterator[Unit]:  # type: ignore[no-untyped-def]
    rig = Unit(tmp_path, mosquitto.url)
    try:
        yield rig
    finally:
        rig.close()


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def served(peer: Peer, sid: int) -> list[tuple[float, m.Message]]:
    """The located reports that served session sid (named after it, or listing it)."""
    return [(t, r) for t, r in peer.messages(m.T_REPORT) if r.sid == sid or sid in r.ext.get(m.EXT_SESSIONS, [])]


def one(peer: Peer, type_: int, sid: int) -> tuple[float, m.Message]:
    [found] = [(t, msg) for t, msg in peer.messages(type_) if msg.sid == sid]
    return found


def test_crash_and_theft_end_at_their_bounds_while_the_wall_clock_steps(unit: Unit) -> None:
    unit.clock.to(BOOT_1970)
    unit.start()
    name, source = unit.system_source
    searching = unit.status()["time"]  # no fix yet: the system clock, as it booted
    assert (searching["source"], searching["trusted"]) == (name, unit.ntp) and searching["now"] < BOOT_1970 + 600
    human = tcu("status", "--control", unit.control).stdout
    assert "time: 1970-01-01T" in human and ("NOT trusted" in human) != unit.ntp, human

    theft_at, _ = unit.trigger("theft")  # stamped with the 1970 clock, and says so
    unit.gps.fix = True
    wait_until(lambda: unit.status()["time"]["source"] == "gnss", what="GNSS time from the first fix")
    crash_at, crash_after = unit.trigger("crash")
    crash_real = time.time()
    # Steps while the fixes have a date: wall time is GNSS time and none of these may change anything.
    for when, step in ((3, lambda: unit.clock.set(DAY_S)), (6, lambda: unit.clock.set(-YEAR_S)),
                       (9, lambda: unit.clock.to(BOOT_1970)), (12, lambda: unit.clock.set(DAY_S))):
        sleep_until(theft_at + when)
        step()
    theft_sid = next(msg.sid for _, msg in unit.peer.messages(m.T_SESSION_START) if msg.trigger == THEFT)
    wait_until(lambda: len(served(unit.peer, theft_sid)) >= THEFT_BOUND_S // 10, timeout=THEFT_BOUND_S,
               what="the theft session's reports")
    unit.gps.fix = False  # a tunnel: from 3 s after the last fix, wall time is the stepped system clock
    tunnel_at = time.monotonic()
    wait_until(lambda: unit.status()["time"]["source"] != "gnss", what="the system clock in the tunnel")
    tunnel = unit.status()["time"]
    assert tunnel["trusted"] == unit.ntp and abs(tunnel["now"] - (time.time() + DAY_S)) < 3
    wait_until(lambda: len(unit.peer.messages(m.T_SESSION_END)) >= 2, timeout=THEFT_BOUND_S, what="both ends")
    unit.gps.fix = True  # out of the tunnel: fixes again, and nothing may be sent for the ended sessions
    wait_until(lambda: unit.status()["time"]["source"] == "gnss", what="GNSS time after the tunnel")
    time.sleep(3)
    assert unit.status()["sessions"] == []

    starts = {msg.trigger: msg for _, msg in unit.peer.messages(m.T_SESSION_START)}
    theft, crash = starts[THEFT], starts[CRASH]
    assert (theft.time_source, crash.time_source) == (source, m.TIME_GNSS)
    assert (theft.time or 0) < BOOT_1970 + 600 and abs((crash.time or 0) - crash_real) <= 2

    crash_end_at, crash_end = one(unit.peer, m.T_SESSION_END, crash.sid)
    theft_end_at, theft_end = one(unit.peer, m.T_SESSION_END, theft.sid)
    assert crash_end.reason == theft_end.reason == tr.REASON_TIME_BOUND
    # at the bound on the monotonic clock: after it, and not later than delivery takes
    assert crash_at + CRASH_BOUND_S <= crash_end_at <= crash_after + CRASH_BOUND_S + 5
    assert theft_at + THEFT_BOUND_S <= theft_end_at <= theft_at + THEFT_BOUND_S + 6
    assert crash_end.time_source == m.TIME_GNSS and abs((crash_end.time or 0) - (crash_real + CRASH_BOUND_S)) <= 3
    # The tunnel began long enough before the theft's end for its last fix to be stale (3 s) by then:
    assert tunnel_at + 4 < theft_at + THEFT_BOUND_S, "the last theft report came %.1f s after the trigger" % (
        tunnel_at - theft_at)
    assert theft_end.time_source == source  # the stepped system clock (a day ahead), and it says so
    assert abs((theft_end.time or 0) - (time.time() - (time.monotonic() - theft_end_at) + DAY_S)) <= 3

    crash_reports, theft_reports = served(unit.peer, crash.sid), served(unit.peer, theft.sid)
    assert len(crash_reports) in (CRASH_BOUND_S // 2, CRASH_BOUND_S // 2 + 1)
    assert len(theft_reports) in (THEFT_BOUND_S // 10, THEFT_BOUND_S // 10 + 1)
    assert all(t <= crash_end_at for t, _ in crash_reports) and all(t <= theft_end_at for t, _ in theft_reports)
    assert all(0 <= (r.dt or 0) <= CRASH_BOUND_S for _, r in crash_reports)
    assert all(0 <= (r.dt or 0) <= THEFT_BOUND_S for _, r in theft_reports)
    assert_audit_matches(unit, crash_real - 5, time.time() + 1)


def assert_audit_matches(unit: Unit, first_s: float, last_s: float) -> None:
    """One audit record per located uplink the broker saw (reports, MSD-bearing starts), each
    at a GNSS time (never the stepped clock: a located uplink needs a fix), the chain intact."""
    located = [msg for _, msg in unit.peer.got if msg.type == m.T_REPORT or
               (msg.type == m.T_SESSION_START and msg.msd is not None)]
    log = unit.state / "audit.log"
    assert verify(log).intact
    records = AuditLog(log).records
    assert len(records) == len(located) > 0
    assert all(first_s <= r["time"] <= last_s for r in records), [r["time"] for r in records]


def signed(unit: Unit, key: Ed25519PrivateKey, counter: int, code: int, not_before: int, not_after: int,
           until: int) -> bytes:
    command = cmd.Command(unit.id, counter, not_before, not_after, code, {cmd.ARG_CASE: "case-%d" % counter,
                                                                         cmd.ARG_UNTIL: until})
    return cmd.seal_command(command, b"backend", cose.ALG_EDDSA, None, key.sign)


@pytest.fixture
def commanded(mosquitto, tmp_path: Path) -> Iterator[tuple[Unit, Ed25519PrivateKey]]:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    (tmp_path / "backend.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    rig = Unit(tmp_path, mosquitto.url, "--backend-key", str(tmp_path / "backend.pub"))
    try:
        yield rig, key
    finally:
        rig.close()


def test_signed_tracking_on_a_stepped_untrusted_clock_never_passes_its_window(
        commanded: tuple[Unit, Ed25519PrivateKey]) -> None:
    unit, key = commanded
    unit.clock.set(-YEAR_S)  # fake-hwclock: the clock of last year's shutdown
    unit.start()
    now = int(time.time())  # the backend's (true) time
    # stolen: valid now, tracking until now + 20; lawful: a replay of a command that expired a minute ago
    stolen = signed(unit, key, 1, cmd.CMD_TRACK_STOLEN, now - 30, now + 5, now + 20)
    lawful = signed(unit, key, 2, cmd.CMD_LAWFUL_REQUEST, now - 120, now - 60, now + 20)
    sent_at = time.monotonic()
    for data in (stolen, lawful):
        unit.peer.publish(cmd.downlink_topic(unit.id), data)
    responses = wait_until(lambda: len(r := unit.peer.messages(m.T_COMMAND_RESPONSE)) >= 2 and r,
                           what="both command responses")
    if unit.ntp:  # the unit trusts its clock (a year behind): neither command is valid yet, no tracking
        assert [msg.result for _, msg in responses] == [m.RESULT_REJECTED] * 2
        time.sleep(3)
        assert unit.peer.messages(m.T_SESSION_START) == [] and unit.peer.messages(m.T_REPORT) == []
        return
    assert [msg.result for _, msg in responses] == [m.RESULT_PROVISIONAL] * 2
    wait_until(lambda: len(unit.peer.messages(m.T_SESSION_START)) >= 2, what="both session starts")
    starts = {msg.trigger: msg for _, msg in unit.peer.messages(m.T_SESSION_START)}
    assert {s.time_source for s in starts.values()} == {m.TIME_SYSTEM}
    assert all(abs((s.time or 0) - (now - YEAR_S)) <= 3 for s in starts.values())

    sleep_until(sent_at + 2)
    unit.clock.set(DAY_S)  # still untrusted, now a day ahead: it moves no end
    status = unit.status()
    assert status["time"]["source"] == "system" and not status["time"]["trusted"]
    assert sorted(s["purpose"] for s in status["sessions"]) == ["lawful_request", "stolen_vehicle_tracking"]
    sleep_until(sent_at + 4)
    assert unit.peer.messages(m.T_REPORT) == []  # nothing sampled on untrusted time
    unit.gps.fix = True  # trusted GNSS time: the unit checks when each command really came

    wait_until(lambda: len(unit.peer.messages(m.T_SESSION_END)) >= 2, timeout=30, what="both sessions' ends")
    lawful_end_at, lawful_end = one(unit.peer, m.T_SESSION_END, starts[LAWFUL].sid)
    stolen_end_at, stolen_end = one(unit.peer, m.T_SESSION_END, starts[STOLEN].sid)
    assert lawful_end.reason == tr.REASON_COMMAND_WINDOW and served(unit.peer, starts[LAWFUL].sid) == []
    assert stolen_end.reason == tr.REASON_TIME_BOUND and stolen_end.time_source == m.TIME_GNSS
    assert now + 20 - 1 <= (stolen_end.time or 0) <= now + 20 + 1  # the signed until, on GNSS time
    reports = served(unit.peer, starts[STOLEN].sid)
    assert len(reports) == 1 and all(t <= stolen_end_at for t, _ in reports)  # period 30 s: one, at the first fix
    time.sleep(2)
    assert len(unit.peer.messages(m.T_REPORT)) == 1
    assert_audit_matches(unit, now, now + 20)
