"""The fleet under Locust: a master and two workers on loopback, headless, 300 units in all
against a real Mosquitto, the backend storing into a real PostgreSQL; the same checks as
`tcu fleet` (tests/fleet_checks.py), plus disjoint unit ids per worker and Locust's own
statistics (every PUBACK a request)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import DEMO_TRACE, REPO, Mosquitto, free_port
from fleet_checks import Sniffer, check_fleet
from postgres import Postgres, postgres  # noqa: F401 - the fixture

from tcu.tools.backend import Backend

LOCUST = [sys.executable, "-m", "locust", "-f", str(REPO / "tools" / "locustfile.py")]
SCENARIO = """
[[events]]
at = 1
share = "4%"
trigger = "crash"
[[events]]
at = 2
share = "2%"
trigger = "theft"
hold = "4s"
[[events]]
at = 2
units = 2
command = "lawful-request"
for = "1m"
"""
PER_WORKER = 150


def test_master_and_two_workers_run_one_fleet(mosquitto: Mosquitto, postgres: Postgres,  # noqa: F811
                                              tmp_path: Path, figures) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    records = tmp_path / "records"
    records.mkdir()
    store = postgres.new_database("locust")
    port = free_port()
    fleet = ["--fleet-broker", mosquitto.url, "--fleet-units", str(PER_WORKER), "--fleet-traces", str(DEMO_TRACE),
             "--fleet-scenario", str(scenario), "--fleet-duration", "8", "--fleet-record", str(records),
             "--fleet-prefix", "lc-"]
    backend = Backend(mosquitto.url, client_id="locust-backend-%d" % time.monotonic_ns(), persistent=False,
                      store=store)
    sniffer = Sniffer(mosquitto)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        master = subprocess.Popen(
            [*LOCUST, *fleet, "--headless", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
             str(port), "--expect-workers", "2", "-u", "2", "-r", "2", "--run-time", "25s",
             "--csv", str(tmp_path / "stats"), "--only-summary"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
        procs.append(master)
        time.sleep(1.0)
        for _ in range(2):
            procs.append(subprocess.Popen([*LOCUST, *fleet, "--worker", "--master-host", "127.0.0.1",
                                           "--master-port", str(port)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, cwd=tmp_path))
        output = master.communicate(timeout=90)[0].decode()
        assert master.returncode == 0, output
        sent = [json.loads(line) for path in sorted(records.glob("*.jsonl")) for line in path.read_text().splitlines()]
        assert backend.wait_for(len(sent), 30)
        time.sleep(0.5)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        backend.close()
        sniffer.close()
    summaries = [json.loads(p.read_text()) for p in sorted(records.glob("*.summary"))]
    assert [s["prefix"] for s in summaries] == ["lc-0-0-", "lc-1-0-"]  # one slice per worker, disjoint ids
    assert all(s["lost"] == 0 and s["errors"] == 0 and s["connect_s"] is not None for s in summaries)
    units = {"%s%05d" % (s["prefix"], i) for s in summaries for i in range(PER_WORKER)}
    result = check_fleet(store, sent, sniffer, units)
    assert result["purposes"]["lawful_request"] == 4 and result["purposes"]["theft_tracking"] == 6
    with open(tmp_path / "stats_stats.csv") as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    assert int(rows["located"]["Request Count"]) == result["located"]  # Locust counted every located PUBACK
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    figures("locust master + 2 workers, %d units: %d uplinks (%d located) stored once each, %d sessions, 0 outside; "
            "%d never-triggered units sent 0 position bytes; Locust located p50 %s ms"
            % (len(units), result["uplinks"], result["located"], result["sessions"], result["never"],
               rows["located"]["50%"]))
