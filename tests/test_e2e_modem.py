"""Issue 14 end to end: `tcu run --modem` against `tcu modem-sim` on ptys, its data relay to a
real Mosquitto, and the reference backend's store (SQLite) taking both the MQTT copies and
the SMS copies from the modem's SMS log.

The unit reads its GPS from the modem's NMEA port (the demo drive, which the modem plays
only once the unit has switched its GNSS engine on). Every test gets fresh processes.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DEMO_TRACE, Mosquitto, free_port
from helpers import stop, tcu
from test_e2e_unit import wait_until

from tcu.protocol import messages
from tcu.tools.backend import Backend
from tcu.tools.backend_sms import follow

UNITS = itertools.count(1)
SMS_AFTER_S = 3.0


class Rig:
    def __init__(self, tmp: Path, broker: Mosquitto, scenario: str | None = None, speed: float = 1.0) -> None:
        self.tmp = tmp
        self.unit = "m14-%d-%d" % (os.getpid(), next(UNITS))
        self.relay = free_port()
        self.sim_ctl = str(tmp / "sim.sock")
        self.sms_log = tmp / "sms.jsonl"
        self.control = str(tmp / "state" / "control.sock")
        self.procs: list[subprocess.Popen[bytes]] = []
        sim_args = ["modem-sim", "--link", str(tmp / "modem"), "--nmea-link", str(tmp / "gnss"), "--gnss",
                    str(DEMO_TRACE), "--data", "127.0.0.1:%d=127.0.0.1:%d" % (self.relay, broker.port),
                    "--sms-log", str(self.sms_log), "--control", self.sim_ctl]
        if scenario:
            (tmp / "scenario.toml").write_text(scenario)
            sim_args += ["--scenario", str(tmp / "scenario.toml"), "--speed", str(speed)]
        self.spawn("sim", *sim_args)
        wait_until(lambda: os.path.exists(self.sim_ctl) and os.path.islink(tmp / "gnss"), what="modem-sim")
        self.backend = Backend(broker.url, client_id="b-" + self.unit, store=str(tmp / "store.db"))
        follow(self.backend, str(self.sms_log), poll_s=0.05)
        self.spawn("run", "run", "--broker", "mqtt://127.0.0.1:%d" % self.relay, "--gps", str(tmp / "gnss"),
                   "--baud", "9600", "--modem", str(tmp / "modem"), "--sms-number", "+15550001",
                   "--sms-after", str(SMS_AFTER_S), "--modem-poll", "0.5", "--state", str(tmp / "state"),
                   "--unit", self.unit)
        wait_until(lambda: self.status().get("link", {}).get("connected"), 20, "the unit online through the modem")

    def spawn(self, name: str, *args: str) -> None:
        with (self.tmp / ("%s.log" % name)).open("wb") as out:
            self.procs.append(subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", *args], stdout=out,
                                               stderr=subprocess.STDOUT))

    def status(self) -> dict[str, Any]:
        result = tcu("status", "--json", "--control", self.control)
        return json.loads(result.stdout) if result.returncode == 0 else {}

    def sim(self, op: str, value: str | None = None) -> dict[str, Any]:
        result = tcu("modem-sim", "ctl", op, *([value] if value else []), "--control", self.sim_ctl)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def trigger(self, *words: str) -> None:
        result = tcu("trigger", *words, "--control", self.control)
        assert result.returncode == 0, result.stderr

    def sms(self) -> list[dict[str, Any]]:
        if not self.sms_log.exists():
            return []
        return [json.loads(line) for line in self.sms_log.read_text().splitlines()]

    def keys(self) -> list[tuple[str, int, int]]:
        return [k for k in self.backend.stored_keys() if k[0] == self.unit]

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        self.backend.close()


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Rig]:
    rig = Rig(tmp_path, mosquitto)
    yield rig
    rig.close()


def exactly_once(rig: Rig, expected: int) -> None:
    """The store holds seqs 1..expected of this unit's boot, each once (the primary key)."""
    keys = rig.keys()
    boots = {boot for _, boot, _ in keys}
    assert len(boots) == 1
    assert sorted(seq for _, _, seq in keys) == list(range(1, expected + 1))


def unit_rows(rig: Rig) -> list[bytes]:
    """The stored payloads of the rig's unit, by boot and seq (through the store interface)."""
    with rig.backend._cond:  # the store's connection is shared with the backend's flush thread
        return [payload for unit, _, payload in rig.backend.store.uplinks() if unit == rig.unit]


def test_crash_in_a_tunnel_goes_by_sms_then_the_backlog_drains_once(rig: Rig, figures: Callable[[str], None]) -> None:
    rig.sim("coverage", "off")  # LTE gone, a GSM cell still heard: SMS works, data does not
    wait_until(lambda: not rig.status()["modem"]["registered"] and not rig.status()["link"]["connected"],
               what="the unit to see the tunnel")
    began = time.monotonic()
    rig.trigger("crash")
    sms = wait_until(rig.sms, SMS_AFTER_S + 3, "the SMS in the sms-log")
    crash_to_sms = time.monotonic() - began
    assert len(sms) == 1 and sms[0]["to"] == "+15550001"
    wait_until(lambda: len(rig.keys()) >= 2, 5, "the backend to store the SMS copy")
    first = [messages.decode(payload) for payload in unit_rows(rig)]
    assert first[0].type == messages.T_SESSION_START and first[0].purpose == 1  # crash notification
    # and its first located uplink: a report, or (issue 15) the session start again with the crash's MSD
    assert first[1].type in (messages.T_REPORT, messages.T_SESSION_START) and first[1].sid == first[0].sid
    audit = (rig.tmp / "state" / "audit.log").read_text()
    assert "crash_notification (SMS to" in audit  # the SMS is a disclosure: on the record
    time.sleep(1.0)  # more reports pile up in the outbox
    assert rig.status()["link"]["outbox"] >= 2
    assert rig.sim("status")["connects_unregistered"] == 0  # no futile connect into the tunnel
    rig.sim("coverage", "on")
    back = time.monotonic()
    wait_until(lambda: rig.status()["link"]["outbox"] == 0, 5, "the backlog to drain")
    drained = time.monotonic() - back
    assert drained < 2.0 + 0.5  # 2 s from registration, plus the status round trip of this check
    time.sleep(0.5)
    status = rig.status()
    assert len(rig.sms()) == 1  # once per session
    assert status["modem"]["sms_sent"] == 1
    acked = status["link"]["acked"]
    wait_until(lambda: len(rig.keys()) >= acked, 5, "the backend to store every uplink")
    exactly_once(rig, len(rig.keys()))
    assert rig.backend.duplicates >= 2  # the SMS copies came by MQTT too, and were dropped
    figures("crash to SMS %.2f s (sms_after_s %.0f); coverage back to empty outbox %.2f s; %d uplinks, %d dup"
            % (crash_to_sms, SMS_AFTER_S, drained, len(rig.keys()), rig.backend.duplicates))


def test_a_stuck_modem_then_a_modem_reset_during_a_session(rig: Rig) -> None:
    rig.trigger("crash")  # a report every 2 s
    wait_until(lambda: rig.status()["link"]["acked"] >= 2, 10, "crash reports delivered")
    rig.sim("stuck", "on")  # answers nothing: the unit times out, says so, and keeps running
    error = wait_until(lambda: rig.status()["modem"]["error"], 10, "the unit to report the stuck modem")
    assert "modem did not answer" in error and rig.status()["gps"]["alive"]
    rig.sim("stuck", "off")
    wait_until(lambda: not rig.status()["modem"]["error"], 10, "the modem answering again")
    rig.sim("reset")
    wait_until(lambda: rig.status()["modem"]["resets"] >= 1, 5, "the unit to see the reset")
    wait_until(lambda: rig.status()["modem"]["registered"] and rig.status()["modem"]["gnss_on"], 10,
               "the modem set up again, GNSS engine on")
    acked = rig.status()["link"]["acked"]
    wait_until(lambda: rig.status()["link"]["acked"] > acked + 2 and rig.status()["gps"]["alive"], 15,
               "reports flowing again, GPS alive")
    assert rig.status()["modem"]["sms_sent"] == 0  # delivered over MQTT in time: no SMS


def flapping(minutes: float = 5.0, every_s: float = 15.0) -> str:
    """A scenario: coverage off and on every `every_s` for `minutes`, then on for good."""
    steps = ['[[step]]\nt = %g\ncoverage = "%s"\n' % (k * every_s, "off" if k % 2 else "on")
             for k in range(1, int(minutes * 60 / every_s) + 1)]
    return "".join(steps) + '[[step]]\nt = %g\ncoverage = "on"\n' % (minutes * 60 + every_s)


def test_theft_with_coverage_flapping(tmp_path: Path, mosquitto: Mosquitto, figures: Callable[[str], None]) -> None:
    """5 minutes of tunnels every 15 s, compressed 10x (the scenario's --speed): 30 s."""
    rig = Rig(tmp_path, mosquitto, scenario=flapping(), speed=10.0)
    try:
        rig.trigger("theft")
        began = time.monotonic()
        saw_down = saw_up = 0
        while time.monotonic() - began < 31.5:  # the scenario ends coverage on at 315 s / 10
            connected = rig.status()["link"]["connected"]
            saw_up, saw_down = saw_up + connected, saw_down + (not connected)
            time.sleep(0.2)
        rig.trigger("clear", "theft")
        wait_until(lambda: rig.status()["link"]["outbox"] == 0 and rig.status()["link"]["connected"], 15,
                   "the backlog to drain")
        acked = rig.status()["link"]["acked"]
        wait_until(lambda: len(rig.keys()) >= acked, 5, "the backend to store every uplink")
        exactly_once(rig, len(rig.keys()))
        rows = [messages.decode(payload) for payload in unit_rows(rig)]
        sessions = {m.sid for m in rows if m.type == messages.T_SESSION_START}
        assert rows[-1].type == messages.T_SESSION_END and len(sessions) == 1
        assert all(m.sid in sessions for m in rows if m.located)  # 0 reports outside the session
        assert sum(m.located for m in rows) >= 2
        assert saw_down and saw_up  # the link did follow the tunnels
        relay = rig.sim("status")
        assert relay["connects_unregistered"] == 0  # none later than RACE_S (1.5 s) after coverage went
        assert not rig.sms()  # theft never goes by SMS
        figures("5 min of coverage flapping every 15 s at 10x: %d uplinks stored once, 0 lost, %d duplicates "
                "dropped, 0 connects while unregistered (%d racing the loss by < 1.5 s)"
                % (len(rows), rig.backend.duplicates, relay["connects_racing"]))
    finally:
        rig.close()
