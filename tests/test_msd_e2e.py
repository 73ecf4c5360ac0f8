"""Issue 15 end to end: `tcu run` on a replayed trace, a real Mosquitto, `tcu backend --store`.
A crash test call and a real SOS each send an eCall MSD in their session start; the stored MSD
carries the trace's position to the milliarcsecond, the right activation flag and testCall;
a signed send-msd command makes the unit resend the SOS's MSD with the next message identifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import tcu
from test_e2e_unit import Position, Rig, keys, rig, trace_fixes, wait_until  # noqa: F401  (fixtures)

from tcu.emulator import msd
from tcu.tools.sessions import Session


def stored_msd(unit: Rig, purpose: str, count: int = 1) -> tuple[Session, list[dict[str, Any]]]:
    session = wait_until(lambda: (s := unit.sessions().get(purpose)) and len(s.msds) >= count and s.points and s,
                         what="%d MSD(s) of the %s session in the store" % (count, purpose))
    return session, [msd.decode(data)["msd"]["msdStructure"] for data in session.msds]


def assert_msd_is_the_first_fix(session: Session, structure: dict[str, Any],
                                trace: dict[Position, int]) -> None:
    first = session.points[0]  # the session's first report: the same fix as its first MSD
    location = structure["vehicleLocation"]
    assert (first.lat_e7, first.lon_e7) in trace
    # 1 mas = 1/3.6 of 1e-7 degree: the MSD holds the trace's position to its own resolution
    assert abs(location["positionLatitude"] - first.lat_e7 * 0.36) <= 0.5
    assert abs(location["positionLongitude"] - first.lon_e7 * 0.36) <= 0.5
    assert structure["timestamp"] == session.time_of(first)
    assert "recentVehicleLocationN1" not in structure and "recentVehicleLocationN2" not in structure
    assert structure["vehicleIdentificationNumber"]["isowmi"] == "TCU"  # the default [vehicle]


def test_crash_test_call_and_sos_send_their_msd(rig: Rig, trace_fixes: dict[Position, int]) -> None:  # noqa: F811
    result = rig.trigger("crash", "--test")
    assert result.returncode == 0 and "(test call)" in result.stdout, result.stderr
    assert rig.status()["sessions"][0]["test"] is True
    crash, [crash_msd] = stored_msd(rig, "crash_notification")
    assert crash_msd["messageIdentifier"] == 1
    assert crash_msd["control"]["automaticActivation"] is True and crash_msd["control"]["testCall"] is True
    assert_msd_is_the_first_fix(crash, crash_msd, trace_fixes)

    assert rig.trigger("sos").returncode == 0
    sos, [sos_msd] = stored_msd(rig, "emergency_call")
    assert sos_msd["control"]["automaticActivation"] is False and sos_msd["control"]["testCall"] is False
    assert_msd_is_the_first_fix(sos, sos_msd, trace_fixes)

    wait_until(lambda: len(rig.sessions()["emergency_call"].points) >= 2, what="a second SOS report")
    sent = tcu("backend", "command", "send-msd", "--broker", rig.broker, "--unit", rig.unit,
               "--session", str(sos.sid), "--key", str(rig.keys / "backend.key"))
    assert sent.returncode == 0, sent.stderr
    sos, msds = stored_msd(rig, "emergency_call", 2)
    assert [m["messageIdentifier"] for m in msds] == [1, 2]
    assert "recentVehicleLocationN1" in msds[1]  # from the fixes the SOS session itself sampled

    # The backend: the test call counted apart, the MSD as JSON with the standard's names
    listed = tcu("backend", "sessions", "--store", str(rig.store))
    assert "emergencies (crash, sos): 1 real, 1 test calls" in listed.stdout, listed.stdout + listed.stderr
    assert "test call" in [line for line in listed.stdout.splitlines() if "crash_notification" in line][0]
    shown = tcu("backend", "msd", "--store", str(rig.store), "--session", "%s/%d" % (rig.unit, sos.sid))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["msd"]["msdStructure"] == msds[1]

    # The unit's audit log marks the test call's disclosures, and its chain verifies
    audit = [json.loads(line) for line in (Path(rig.tmp) / "state" / "audit.log").read_text().splitlines()]
    assert {r["session"] for r in audit if r.get("test")} == {crash.sid}
    assert tcu("audit", "verify", str(Path(rig.tmp) / "state" / "audit.log")).returncode == 0
