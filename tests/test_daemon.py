"""`tcu run` end to end: a virtual serial GPS (a real pty fed live NMEA at 1 Hz), a real
Mosquitto, the backend; `tcu trigger` and `tcu status` as a tester uses them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from helpers import PtyGps, tcu, wait_until

from tcu.tools.backend import Backend

UNIT = "unit-run-1"
LAT, LON = 48.1374300, 11.5754900


LiveGps = PtyGps  # a receiver with a fix at LAT, LON (other test modules import it from here)


def test_run_trigger_status_and_a_clean_stop(mosquitto, tmp_path: Path) -> None:
    gps = LiveGps()
    control, led = str(tmp_path / "control.sock"), tmp_path / "privacy-led"
    backend = Backend(mosquitto.url, client_id="daemon-backend-%d" % time.monotonic_ns(), persistent=False)
    unit = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "run", "--broker", mosquitto.url, "--gps", gps.path,
                             "--baud", "9600", "--unit", UNIT, "--state", str(tmp_path / "state"),
                             "--control", control, "--indicator", "file:%s" % led],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: os.path.exists(control)), (
            unit.stderr.read() if unit.stderr and unit.poll() is not None else "")
        assert os.stat(control).st_mode & 0o777 == 0o600  # owner-only
        status = lambda: json.loads(tcu("status", "--json", "--control", control).stdout)  # noqa: E731
        assert wait_until(lambda: status()["gps"]["alive"])
        first = status()
        assert (first["state"], first["indicator"], first["sessions"]) == ("dormant", False, [])
        assert led.read_text() == "0\n"

        assert tcu("trigger", "theft", "--control", control).returncode == 0
        active = status()
        assert active["state"] == "active" and active["indicator"] and led.read_text() == "1\n"
        assert [(s["trigger"], s["purpose"]) for s in active["sessions"]] == [("theft", "theft_tracking")]
        assert wait_until(lambda: any(r["type"] == "report" for r in backend.records))
        report = next(r for r in backend.records if r["type"] == "report")
        assert abs(report["lat"] - LAT) < 1e-6 and abs(report["lon"] - LON) < 1e-6
        assert abs(datetime.fromisoformat(report["time"].replace("Z", "+00:00")).timestamp() - time.time()) < 5

        assert tcu("trigger", "clear", "theft", "--control", control).returncode == 0
        assert status()["state"] == "dormant" and led.read_text() == "0\n"
        assert tcu("trigger", "crash", "--control", control).returncode == 0
        refused = tcu("trigger", "cancel", "crash", "--control", control)
        assert refused.returncode == 1 and "occupant cannot cancel" in refused.stderr
        human = tcu("status", "--control", control).stdout
        assert "privacy indicator: ON" in human and "crash_notification" in human

        unit.send_signal(signal.SIGTERM)
        assert unit.wait(15) == 0
        assert "stopped cleanly" in (unit.stderr.read() if unit.stderr else "")
        assert led.read_text() == "0\n" and not os.path.exists(control)
        assert wait_until(lambda: [r["reason"] for r in backend.records if r["type"] == "session_end"]
                          == ["trigger_cleared", "shutdown"])
    finally:
        if unit.poll() is None:
            unit.kill()
            unit.wait(5)
        backend.close()
        gps.close()


def test_the_tester_cli_is_clear_when_no_unit_runs(tmp_path: Path) -> None:
    result = tcu("status", "--control", str(tmp_path / "none.sock"))
    assert result.returncode == 2 and "no unit is listening" in result.stderr and "Traceback" not in result.stderr
    result = tcu("trigger", "airbag", "--control", str(tmp_path / "none.sock"))
    assert result.returncode == 2 and "unknown trigger 'airbag'" in result.stderr


def test_a_signed_lawful_request_starts_tracking_and_its_expiry_ends_it(mosquitto, tmp_path: Path) -> None:
    keys, other = tmp_path / "keys", tmp_path / "other"
    keys.mkdir()
    other.mkdir()
    assert tcu("backend", "keygen", "--out", str(keys)).returncode == 0
    assert tcu("backend", "keygen", "--out", str(other)).returncode == 0
    assert (keys / "backend.key").stat().st_mode & 0o777 == 0o600
    gps = LiveGps()
    control = str(tmp_path / "control.sock")
    backend = Backend(mosquitto.url, client_id="lawful-backend-%d" % time.monotonic_ns(), persistent=False)
    unit = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "run", "--broker", mosquitto.url, "--gps", gps.path,
                             "--baud", "9600", "--unit", UNIT, "--state", str(tmp_path / "state"), "--control", control,
                             "--backend-key", str(keys / "backend.pub")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: os.path.exists(control))
        status = lambda: json.loads(tcu("status", "--json", "--control", control).stdout)  # noqa: E731
        forged = tcu("backend", "command", "lawful-request", "--broker", mosquitto.url, "--unit", UNIT,
                     "--case", "forged-1", "--for", "1h", "--key", str(other / "backend.key"))
        assert forged.returncode == 0
        assert wait_until(lambda: any(r["type"] == "command_response" for r in backend.records))
        refusal = next(r for r in backend.records if r["type"] == "command_response")
        assert (refusal["result"], refusal["reason"]) == ("rejected", "unauthentic")
        assert status()["sessions"] == []  # a command signed with another key changed nothing

        # An 8 s request inside a 300 s validity window is refused on untrusted time (README: Two
        # clocks), so the real one goes once the receiver's time is in: the CI machine has no NTP.
        assert wait_until(lambda: status()["time"]["trusted"]), status()["time"]
        sent = tcu("backend", "command", "lawful-request", "--broker", mosquitto.url, "--unit", UNIT,
                   "--case", "court-order-7", "--for", "8s", "--key", str(keys / "backend.key"))
        assert sent.returncode == 0, sent.stderr
        answers = lambda: [r for r in backend.records if r["type"] == "command_response"]  # noqa: E731
        assert wait_until(lambda: len(answers()) == 2), answers()
        assert answers()[1]["result"] == "accepted", answers()[1]
        assert wait_until(lambda: [s["purpose"] for s in status()["sessions"]] == ["lawful_request"])
        assert wait_until(lambda: any(r["type"] == "report" for r in backend.records))
        assert wait_until(lambda: status()["state"] == "dormant", timeout=20)  # its expiry ended it
        kinds = [(r["type"], r.get("reason"), r.get("purpose")) for r in backend.records if r["type"] != "report"]
        assert kinds[0][0] == "command_response"
        assert ("session_start", None, "lawful_request") in kinds
        assert ("session_end", "time_bound", "lawful_request") in kinds
        report = next(r for r in backend.records if r["type"] == "report")
        assert report["purpose"] == "lawful_request" and "speed" not in report  # position only
    finally:
        unit.send_signal(signal.SIGTERM)
        unit.wait(15)
        backend.close()
        gps.close()


def test_tcu_run_refuses_bad_setup_with_one_clear_line(traces, tmp_path: Path) -> None:
    trace = str(traces / "ublox-8.log")
    for args, message in ((["--state", "/proc/nope"], "cannot create the unit's state directory"),
                          (["--backend-hmac-key", str(tmp_path / "none")], "cannot read the backend HMAC key"),
                          (["--indicator", "led"], "expected none, file:PATH"),
                          (["--broker", "mqtt://[::1"], "--broker = 'mqtt://[::1': expected mqtt://HOST"),
                          (["--unit", "a/b"], "cannot contain '/'")):
        result = tcu("run", "--gps", trace, "--broker", "mqtt://127.0.0.1:1", *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, args


def test_a_malformed_control_request_is_answered(
        mosquitto, traces, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tcu.emulator.daemon import UnitDaemon

    control = str(tmp_path / "control.sock")
    daemon = UnitDaemon(mosquitto.url, UNIT, str(tmp_path / "state"), str(traces / "ublox-8.log"), control=control)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(control)
            lines = sock.makefile("rwb")
            for request, error in ((b"not json", "one JSON object per line"), (b"[1]", "a JSON object"),
                                   (b'{"op": "trigger", "kind": ["crash"]}', "unknown request"),
                                   (b'{"op": {"a": 1}, "kind": "crash"}', "unknown request")):
                lines.write(request + b"\n")
                lines.flush()
                answer = json.loads(lines.readline())
                assert answer["ok"] is False and error in answer["error"], (request, answer)
            lines.close()
        assert daemon.request({"op": "trigger", "kind": "crash"})["ok"]  # the unit serves on
    finally:
        daemon.close()
    assert "Traceback" not in capsys.readouterr().err


def test_a_gpio_indicator_or_button_without_a_pin_library_is_one_line(mosquitto, traces, tmp_path: Path) -> None:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "no-such-factory"}  # as on a machine without lgpio
    for args in (["--indicator", "gpio:4"], ["--input", "gpio:4=sos"]):
        result = subprocess.run([sys.executable, "-m", "tcu.tools.cli", "run", "--gps", str(traces / "ublox-8.log"),
                                 "--broker", mosquitto.url, "--state", str(tmp_path / "state"), *args],
                                capture_output=True, text=True, timeout=30, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "gpio:4" in result.stderr and "no GPIO pin library" in result.stderr, result.stderr
