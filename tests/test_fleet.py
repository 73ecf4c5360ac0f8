"""`tcu fleet` against a real Mosquitto with the reference backend storing into a real
PostgreSQL: 500 units, a scenario of crash, theft and a lawful request (signed commands
through the broker). A sniffer subscribed to every topic decodes what went over the wire."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO_TRACE, Mosquitto
from fleet_checks import Sniffer, check_fleet
from postgres import Postgres, postgres  # noqa: F401 - the fixture

from tcu.tools.backend import Backend
from tcu.tools.fleet_scenario import load

TCU = [sys.executable, "-m", "tcu.tools.cli"]
SCENARIO = """
duration = 12
seed = 7
[rates]
crash = 1.0          # per unit-hour: ~1.7 more crashes in 12 s over 500 units
[[events]]
at = 1
share = "2%"
trigger = "crash"
[[events]]
at = 2
share = "1%"
trigger = "theft"
hold = "6s"
[[events]]
at = 3
units = 4
command = "lawful-request"
for = "1m"
case = "LR-17"
[[events]]
at = 6
units = 2
command = "locate-now"
"""


def run_fleet(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TCU, "fleet", *args], capture_output=True, text=True, timeout=timeout)


def test_500_units_with_crash_theft_and_a_lawful_request(mosquitto: Mosquitto, postgres: Postgres,  # noqa: F811
                                                         tmp_path: Path, figures) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    store = postgres.new_database("fleet")
    backend = Backend(mosquitto.url, client_id="fleet-backend-%d" % time.monotonic_ns(), persistent=False, store=store)
    sniffer = Sniffer(mosquitto)
    record = tmp_path / "sent.jsonl"
    try:
        result = run_fleet("--units", "500", "--broker", mosquitto.url, "--traces", str(DEMO_TRACE),
                           "--scenario", str(scenario), "--processes", "2", "--spread-km", "20",
                           "--record", str(record), "--prefix", "f17-")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        sent = [json.loads(line) for line in record.read_text().splitlines()]
        assert backend.wait_for(len(sent), 30), (backend.stored(), len(sent))
        time.sleep(0.5)
    finally:
        backend.close()
        sniffer.close()
    result = check_fleet(store, sent, sniffer, {"f17-%05d" % i for i in range(500)})
    assert summary["lost"] == 0 and summary["errors"] == 0
    purposes = result["purposes"]
    assert purposes["crash_notification"] >= 10 and purposes["theft_tracking"] == 5 and purposes["lawful_request"] == 4
    assert result["never"] >= 450
    figures("500 units: %(uplinks)d uplinks (%(located)d located) stored once each, %(sessions)d sessions "
            "%(purposes)s, 0 outside; %(never)d never-triggered units sent 0 position bytes" % result
            + "; connect %.2f s, PUBACK p99 %s ms" % (summary["connect_s"], summary["puback_p99_ms"]))


def test_a_dormant_fleet_sends_no_position(mosquitto: Mosquitto) -> None:
    sniffer = Sniffer(mosquitto)
    try:
        result = run_fleet("--units", "100", "--broker", mosquitto.url, "--traces", str(DEMO_TRACE),
                           "--duration", "2", "--prefix", "dormant-", "--quiet")
        time.sleep(0.3)
    finally:
        sniffer.close()
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["connects"] == 100 and summary["uplinks"] == 0 and summary["located"] == 0
    units = {u for u in sniffer.messages if u.startswith("dormant-")}
    assert len(units) == 100 and sum(sniffer.position_bytes.values()) == 0


@pytest.mark.parametrize("text, message", [
    ("durations = 5", "s.toml: durations: unknown key: expected one of duration, seed, rates, events, churn"),
    ("[rates]\ncrsh = 1", "s.toml: rates.crsh: unknown trigger: expected one of assist, crash, roadside, sos, theft"),
    ("[rates]\ncrash = -1", "s.toml: rates.crash = -1: expected events per unit-hour, from 0 to 3600"),
    ("[[events]]\nat = 5\nshare = '200%'\ntrigger = 'crash'", "s.toml: events[0].share = '200%': expected a "
     "percentage"),
    ("[[events]]\nshare = '2%'\ntrigger = 'crash'", "s.toml: events[0].at: missing"),
    ("[[events]]\nat = 1\nshare = '2%'\ncommand = 'steal'", "s.toml: events[0].command = 'steal': expected one of"),
    ("[[events]]\nat = 1\nshare = '2%'", "s.toml: events[0]: expected one of trigger = KIND or command = NAME"),
    ("[[events]]\nat = 'soon'\nunits = 1\ntrigger = 'sos'", "s.toml: events[0].at = 'soon': expected a duration"),
    ("[churn]\noutage = '5 days'", "s.toml: churn.outage = '5 days': expected a duration"),
    ("duration = [", "s.toml: not valid TOML"),
])
def test_a_scenario_with_a_mistake_stops_the_start_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    result = run_fleet("--units", "1", "--broker", "mqtt://127.0.0.1:1", "--traces", str(DEMO_TRACE),
                       "--scenario", str(path), timeout=30)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcu fleet: error: %s: " % path)
    assert message in lines[0]


def test_a_good_scenario_parses(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO + "[churn]\nreboots = 0.5\noutages = 2\noutage = '30s'\n")
    scenario = load(str(path))
    assert scenario.duration_s == 12 and scenario.rates == {1: 1.0} and scenario.commands
    assert [e.count(500) for e in scenario.events] == [10, 5, 4, 2]
    assert scenario.events[1].hold_s == 6 and scenario.outage_s == 30 and scenario.outages == 2


def test_more_units_than_files_allowed_says_so(tmp_path: Path) -> None:
    result = run_fleet("--units", "5000000", "--broker", "mqtt://127.0.0.1:1", "--traces", str(DEMO_TRACE),
                       timeout=30)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "5000000 units in one process need about 5000064 open files" in result.stderr
    assert "--processes" in result.stderr


def test_missing_traces_and_identities_are_one_line(tmp_path: Path) -> None:
    for args, message in ((["--traces", str(tmp_path)], "no *.log, *.nmea or *.txt trace"),
                          (["--traces", str(DEMO_TRACE), "--tls-cert", str(tmp_path / "{unit}.crt"), "--tls-key",
                            str(tmp_path / "{unit}.key")], "no such file for the first unit")):
        result = run_fleet("--units", "3", "--broker", "mqtt://127.0.0.1:1", *args, timeout=30)
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1


CHURN = """
seed = 3
[[events]]
at = 0
share = "20%"
trigger = "crash"
[churn]
outages = 900      # per unit-hour: over 100 units, ~25 outages a second
reboots = 300
outage = "1s"
reboot = "1s"
"""


def test_churn_outages_and_reboots_lose_nothing(mosquitto: Mosquitto, postgres: Postgres,  # noqa: F811
                                                tmp_path: Path, figures) -> None:
    """Links dropped without DISCONNECT (the will fires) and reboots (sessions end, a new boot)
    while units are in crash sessions: every uplink still stored exactly once, none outside
    its session."""
    scenario = tmp_path / "churn.toml"
    scenario.write_text(CHURN)
    store = postgres.new_database("churn")
    backend = Backend(mosquitto.url, client_id="churn-backend-%d" % time.monotonic_ns(), persistent=False, store=store)
    sniffer = Sniffer(mosquitto)
    record = tmp_path / "sent.jsonl"
    try:
        result = run_fleet("--units", "100", "--broker", mosquitto.url, "--traces", str(DEMO_TRACE), "--scenario",
                           str(scenario), "--duration", "8", "--record", str(record), "--prefix", "churn-", "--quiet")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        sent = [json.loads(line) for line in record.read_text().splitlines()]
        if not backend.wait_for(len(sent), 30):
            stored = set(backend.stored_keys())
            missing = [r for r in sent if (r["unit"], r["boot"], r["seq"]) not in stored]
            raise AssertionError("missing %s; summary %s" % (missing, summary))
        time.sleep(0.5)
    finally:
        backend.close()
        sniffer.close()
    assert summary["outages"] > 0 and summary["reboots"] > 0 and summary["lost"] == 0
    checked = check_fleet(store, sent, sniffer, {"churn-%05d" % i for i in range(100)})
    figures("churn: %d outages, %d reboots, %d uplinks (%d located) stored once each, 0 outside their session"
            % (summary["outages"], summary["reboots"], checked["uplinks"], checked["located"]))
