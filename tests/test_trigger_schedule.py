"""Scheduled triggers: `tcu trigger KIND --at WHEN` and `--script FILE` leave the schedule with
a real `tcu run` (shown by `tcu status`, fired on the unit's clock, in order, seen on a real
Mosquitto), `--unschedule` drops it, and every bad time or line is one line of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_daemon import LiveGps, tcu, wait_until

from tcu.firmware.errors import UsageError
from tcu.tools.backend import Backend
from tcu.tools.trigger_schedule import delay_of, read_script

UNIT = "unit-schedule-1"
NOW = datetime(2026, 12, 2, 20, 0, 0, tzinfo=timezone(timedelta(hours=1)))


@pytest.mark.parametrize(("when", "seconds"), [("+30", 30), ("+90s", 90), ("+5m", 300), ("+1h", 3600),
                                               ("+1m30s", 90), ("+0.5", 0.5), ("20:00:10", 10), ("20:05", 300),
                                               ("2026-12-02T19:01:00Z", 60), ("2026-12-02T20:00:01+01:00", 1)])
def test_when_is_an_offset_or_an_absolute_time(when: str, seconds: float) -> None:
    assert delay_of(when, NOW) == seconds


@pytest.mark.parametrize(("when", "why"), [("+0", "+0 is one now"), ("+0s", "+0 is one now"), ("+", "not an offset"),
                                           ("+3x", "not an offset"), ("19:59", "in the past"),
                                           ("2026-12-02T18:00:00Z", "in the past"), ("+25h", "at most 24 h"),
                                           ("2026-12-02T21:00:00", "with its offset"), ("soon", "expected +SECONDS")])
def test_a_bad_time_is_one_clear_line(when: str, why: str) -> None:
    with pytest.raises(UsageError, match=why.replace("+", r"\+")) as err:
        delay_of(when, NOW)
    assert "\n" not in str(err.value)


def test_a_script_with_bad_lines_names_each_and_nothing_is_sent(tmp_path: Path) -> None:
    script = tmp_path / "session.txt"
    script.write_text("# a tester's session\n+30 crash\n+0 theft\n\n+5 airbag\nsoon theft\n+60 clear crash\n"
                      "+9 theft --test\n")
    entries, errors = read_script(str(script), NOW)
    assert [(e["in_s"], e["op"], e["kind"]) for e in entries] == [(30, "trigger", "crash"), (60, "clear", "crash")]
    assert [e.split(": ", 1)[0] for e in errors] == ["%s:%d" % (script, n) for n in (3, 5, 6, 8)]
    result = tcu("trigger", "--script", str(script), "--control", str(tmp_path / "none.sock"))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 4 and "Traceback" not in result.stderr
    assert "unknown trigger 'airbag'" in result.stderr and "+0 is one now" in result.stderr
    bad = tcu("trigger", "crash", "--at", "+0", "--control", str(tmp_path / "none.sock"))
    assert bad.returncode == 2 and "+0" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_a_live_unit_keeps_shows_and_fires_its_schedule_in_order(mosquitto, tmp_path: Path) -> None:
    gps = LiveGps()
    control = str(tmp_path / "control.sock")
    backend = Backend(mosquitto.url, client_id="schedule-backend-%d" % time.monotonic_ns(), persistent=False)
    unit = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "run", "--broker", mosquitto.url,
                             "--gps", gps.path, "--baud", "9600", "--unit", UNIT, "--state", str(tmp_path / "state"),
                             "--control", control],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = lambda: json.loads(tcu("status", "--json", "--control", control).stdout)  # noqa: E731
    starts = lambda: [r for r in backend.records if r["type"] == "session_start"]  # noqa: E731
    try:
        assert wait_until(lambda: os.path.exists(control))
        sent = time.time()
        scheduled = tcu("trigger", "theft", "--at", "+4", "--control", control)
        assert scheduled.returncode == 0 and "scheduled #1: trigger theft" in scheduled.stdout, scheduled.stderr
        pending = status()["scheduled"]["pending"]
        assert [(e["id"], e["op"], e["kind"]) for e in pending] == [(1, "trigger", "theft")] and pending[0]["in_s"] <= 4
        assert status()["state"] == "dormant" and not starts()  # not yet
        assert "scheduled #1: trigger theft in" in tcu("status", "--control", control).stdout
        assert wait_until(lambda: starts(), timeout=20)
        assert (starts()[0]["trigger"], starts()[0]["purpose"]) == ("theft", "theft_tracking")
        assert time.time() - sent >= 3.5  # fired at its time, not at once
        assert status()["scheduled"]["fired"] == [{"id": 1, "op": "trigger", "kind": "theft", "test": False,
                                                   "text": "+4 theft", "ok": True, "result": "done"}]

        script = tmp_path / "script.txt"
        script.write_text("+1 clear theft\n+2 sos   # then an SOS\n+3 cancel sos\n+600 crash\n")
        assert tcu("trigger", "--script", str(script), "--control", control).returncode == 0
        assert [e["text"] for e in status()["scheduled"]["pending"]] == [
            "+1 clear theft", "+2 sos", "+3 cancel sos", "+600 crash"]
        assert wait_until(lambda: len(status()["scheduled"]["fired"]) == 4, timeout=20)
        assert [(e["id"], e["ok"]) for e in status()["scheduled"]["fired"]] == [(1, True), (2, True), (3, True),
                                                                                  (4, True)]
        assert wait_until(lambda: len([r for r in backend.records if r["type"] == "session_end"]) == 2)
        # an SOS's session start comes again with its eCall MSD once there is a fix: one entry per session
        timeline = list(dict.fromkeys((r["type"], r.get("purpose"), r.get("reason")) for r in backend.records
                                      if r["type"] != "report"))
        assert timeline == [("session_start", "theft_tracking", None),
                            ("session_end", "theft_tracking", "trigger_cleared"),
                            ("session_start", "emergency_call", None), ("session_end", "emergency_call", "cancelled")]

        dropped = tcu("trigger", "--unschedule", "5", "--control", control)
        assert dropped.returncode == 0 and "unscheduled #5" in dropped.stdout
        assert status()["scheduled"]["pending"] == []
        again = tcu("trigger", "--unschedule", "5", "--control", control)
        assert again.returncode == 1 and "no scheduled trigger #5" in again.stderr

        unit.send_signal(signal.SIGTERM)
        assert unit.wait(15) == 0
        log = unit.stderr.read() if unit.stderr else ""
        assert "scheduled #1 (+4 theft) fired" in log and "scheduled #3 (+2 sos) fired" in log
    finally:
        if unit.poll() is None:
            unit.kill()
            unit.wait(5)
        backend.close()
        gps.close()
