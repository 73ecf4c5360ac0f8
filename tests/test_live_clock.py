"""The live unit (`tcu run`'s LiveUnit, real Mosquitto) with its wall clock stepped forward a
year and back to 1970 during a crash and a theft session: the sessions end at their bounds
on the monotonic clock, with bound / period located reports (+1). The clocks are injected
(emulator/wallclock.py, a monotonic clock running 10x); the machine's own is never touched."""

from __future__ import annotations

import time

import pytest
from test_downlink_mqtt import UNIT, Peer

from tcu.emulator.live import LiveUnit
from tcu.emulator.wallclock import Clocks
from tcu.firmware import services as sv
from tcu.firmware import transitions as tr
from tcu.firmware.events import FixEvent, TriggerOn
from tcu.firmware.fix import Fix
from tcu.protocol import messages

SPEED = 10  # monotonic seconds per real second
YEAR_S = 365 * 86400


def test_wall_clock_steps_during_a_crash_and_a_theft_session_move_no_bound(mosquitto, tmp_path) -> None:
    base = time.monotonic()
    offset = {"s": 0.0}  # the wall clock's step, applied to the system clock and the receiver alike
    clocks = Clocks(monotonic=lambda: base + (time.monotonic() - base) * SPEED,
                    system=lambda: max(0.0, time.time() + offset["s"]), ntp=lambda: False)
    services = sv.narrow_services(sv.default_services(), {"crash": {"bound_s": 30}, "theft": {"bound_s": 40}})
    peer = Peer(mosquitto.url)
    try:
        with LiveUnit(mosquitto.url, UNIT, tmp_path, clocks=clocks, services=services) as unit:
            unit.handle(TriggerOn(sv.CRASH))
            unit.handle(TriggerOn(sv.THEFT))
            started = time.monotonic()
            second = 0
            while time.monotonic() - started < 5.5:  # 55 s of monotonic time, one fix per second of it
                if second == 8:
                    offset["s"] = YEAR_S  # NTP steps the clock forward a year...
                elif second == 16:
                    offset["s"] = -time.time()  # ... a reset takes it back to 1970 ...
                elif second == 26:
                    offset["s"] = -YEAR_S  # ... and the receiver is a year behind
                fix_ms = int(max(0.0, time.time() + offset["s"]) * 1000)
                unit.handle(FixEvent(Fix(fix_ms, 481374300, 115754900, 3, 51900, 13900, 9000, 11, 94)))
                second += 1
                time.sleep(1 / SPEED)
            assert not unit.unit.sessions  # both ended by their bounds, before the shutdown
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len([m for m in peer.decoded() if m.type == messages.T_SESSION_END]) < 2:
            time.sleep(0.1)
        msgs = peer.decoded()
    finally:
        peer.close()
    starts = {m.sid: m.trigger for m in msgs if m.type == messages.T_SESSION_START}
    ends = {starts[m.sid]: m.reason for m in msgs if m.type == messages.T_SESSION_END}
    assert ends == {sv.CRASH: tr.REASON_TIME_BOUND, sv.THEFT: tr.REASON_TIME_BOUND}

    def served(kind: int) -> int:
        sid = next(s for s, k in starts.items() if k == kind)
        return sum(1 for m in msgs if m.located and (m.sid == sid or sid in m.ext.get(messages.EXT_SESSIONS, [])))

    assert served(sv.CRASH) in (15, 16)  # 30 s / 2 s (+1)
    assert served(sv.THEFT) in (4, 5)  # 40 s / 10 s (+1)


@pytest.mark.parametrize("synchronised", [True, False])
def test_the_status_message_says_its_time_is_the_system_clock_and_whether_ntp_keeps_it(
        synchronised: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The status message (and the last will) is stamped by the link with the system clock,
    never GNSS time: its state bits say so, trusted only while NTP keeps the clock synchronised."""
    from tcu.emulator import uplink


    monkeypatch.setattr(uplink, "ntp_synchronised", lambda: synchronised)
    for online in (True, False):
        state = messages.decode(uplink.status_payload(online)).state
        assert state is not None and state & messages.STATE_TIME_NTP
        assert bool(state & messages.STATE_TIME_TRUSTED) is synchronised
        assert bool(state & messages.STATE_ONLINE) is online
