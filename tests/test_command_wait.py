"""`tcu backend command ... --wait`: a real `tcu run` behind a real Mosquitto answers, and the
command's sender prints that answer: accepted, rejected with its reason, or none in time
(with what the unit's retained status says about why)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from test_daemon import LiveGps, tcu, wait_until

UNIT = "unit-wait-1"


def command(mosquitto, key: Path, *args: str, unit: str = UNIT) -> subprocess.CompletedProcess[str]:
    return tcu("backend", "command", *args, "--broker", mosquitto.url, "--unit", unit, "--key", str(key))


def test_wait_prints_the_units_answer_accepted_rejected_or_none(mosquitto, tmp_path: Path) -> None:
    keys, other = tmp_path / "keys", tmp_path / "other"
    for folder in (keys, other):
        assert tcu("backend", "keygen", "--out", str(folder)).returncode == 0
    gps = LiveGps()
    control = str(tmp_path / "control.sock")
    unit = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "run", "--broker", mosquitto.url, "--gps", gps.path,
                             "--baud", "9600", "--unit", UNIT, "--state", str(tmp_path / "state"), "--control", control,
                             "--backend-key", str(keys / "backend.pub")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: os.path.exists(control))
        accepted = command(mosquitto, keys / "backend.key", "lawful-request", "--case", "court-7", "--for", "1h",
                           "--wait", "20")
        assert accepted.returncode == 0, accepted.stderr
        # "accepted provisionally" while the unit's time is not yet trusted (no GNSS date, no NTP)
        assert "unit %s answered command" % UNIT in accepted.stdout and "(lawful-request): accepted" in accepted.stdout
        assert "(session 1)" in accepted.stdout

        forged = command(mosquitto, other / "backend.key", "track-stolen", "--case", "x", "--for", "1h", "--wait")
        assert forged.returncode == 1
        assert "rejected: unauthentic: signed with a key this unit does not trust" in forged.stderr

        no_session = command(mosquitto, keys / "backend.key", "cancel", "--session", "99", "--wait", "20")
        assert no_session.returncode == 1 and "rejected: policy" in no_session.stderr  # its own counter matched

        nobody = command(mosquitto, keys / "backend.key", "cancel", "--session", "1", "--wait", "1",
                         unit="unit-nobody")
        assert nobody.returncode == 3 and "no answer from unit unit-nobody" in nobody.stderr
        assert "no status from this unit" in nobody.stderr and "Traceback" not in nobody.stderr

        unit.send_signal(signal.SIGTERM)
        assert unit.wait(15) == 0
        offline = command(mosquitto, keys / "backend.key", "cancel", "--session", "1", "--wait", "1")
        assert offline.returncode == 3 and "the unit is offline" in offline.stderr
        assert "its broker session keeps the command" in offline.stderr
    finally:
        if unit.poll() is None:
            unit.kill()
            unit.wait(5)
        gps.close()


def test_wait_refuses_a_bad_number_in_one_line(tmp_path: Path) -> None:
    for bad in ("0", "-3", "soon", "301"):
        result = tcu("backend", "command", "cancel", "--session", "1", "--broker", "mqtt://127.0.0.1:1",
                     "--unit", "u", "--wait", bad)
        assert result.returncode == 2 and "--wait SECONDS" in result.stderr and "Traceback" not in result.stderr
