"""Issue 13 for `tcu fleet`: each simulated unit's firmware runs on the monotonic clock, as `tcu
run`'s, so the host's wall clock stepping a day ahead, a year back and to 1970 while a crash
and a theft session run neither stretches nor cuts them. The clocks are injected
(FleetConfig.clock: a monotonic clock running 4x, a stepped wall clock); a real Mosquitto."""

from __future__ import annotations

import os
import time

from conftest import DEMO_TRACE, Mosquitto

from tcu.emulator.wallclock import Clocks
from tcu.firmware import services as sv
from tcu.firmware import transitions as tr
from tcu.firmware.events import Publish
from tcu.protocol import messages
from tcu.tools.fleet_engine import Fleet, FleetConfig, SimUnit

SPEED = 4  # the units' monotonic seconds per real second
CRASH_BOUND_S, THEFT_BOUND_S = 16, 20  # periods 2 s and 10 s
DAY_S, YEAR_S = 86400, 365 * 86400


class Recording(Fleet):
    """Every uplink decoded, with its unit's monotonic time when it was sent."""

    uplinks: list[tuple[str, int, messages.Message]]

    def publish(self, sim: SimUnit, action: Publish, wall_ms: int) -> None:
        self.uplinks.append((sim.uid, sim.last_ms, messages.decode(action.payload)))
        super().publish(sim, action, wall_ms)


def test_a_stepped_wall_clock_neither_stretches_nor_cuts_a_fleet_unit_session(mosquitto: Mosquitto) -> None:
    base, offset = time.monotonic(), [0.0]
    clock = Clocks(monotonic=lambda: base + (time.monotonic() - base) * SPEED,
                   system=lambda: max(0.0, time.time() + offset[0]), ntp=lambda: False)
    services = sv.narrow_services(sv.default_services(), {"crash": {"bound_s": CRASH_BOUND_S},
                                                          "theft": {"bound_s": THEFT_BOUND_S}})
    config = FleetConfig(broker=mosquitto.url, count=2, prefix="fclock-%d-" % os.getpid(), traces=[str(DEMO_TRACE)],
                         services=services, clock=clock)
    fleet = Recording(config)
    fleet.uplinks = []
    fleet.start_units()
    fleet.run_until(time.monotonic() + 20, until=fleet.all_connected)
    assert fleet.all_connected()
    crashed, stolen = fleet.units
    now = time.monotonic()
    fleet.trigger(crashed, sv.CRASH)
    fleet.trigger(stolen, sv.THEFT)
    for at, step in ((1.0, DAY_S), (2.0, -YEAR_S), (3.0, None), (4.0, DAY_S)):  # None: back to 1970
        fleet.at(now + at, lambda step=step: offset.__setitem__(0, -time.time() + 1000 if step is None else step))
    fleet.run_until(now + THEFT_BOUND_S / SPEED + 1.5)
    assert not crashed.unit.sessions and not stolen.unit.sessions  # both ended by their bounds, before the stop
    fleet.stop()

    for sim, bound_s, period_s in ((crashed, CRASH_BOUND_S, 2), (stolen, THEFT_BOUND_S, 10)):
        sent = [(t, msg) for uid, t, msg in fleet.uplinks if uid == sim.uid]
        [(start_ms, _)] = [(t, msg) for t, msg in sent if msg.type == messages.T_SESSION_START and msg.msd is None]
        [(end_ms, end)] = [(t, msg) for t, msg in sent if msg.type == messages.T_SESSION_END]
        assert end.reason == tr.REASON_TIME_BOUND
        # at the bound on the monotonic clock (ticks are checked every 0.1 s: SPEED * 0.1 s of unit time, and load)
        assert start_ms + bound_s * 1000 <= end_ms <= start_ms + bound_s * 1000 + 2000
        reports = [t for t, msg in sent if msg.type == messages.T_REPORT]
        assert len(reports) in (bound_s // period_s, bound_s // period_s + 1)
        assert all(start_ms <= t < end_ms for t in reports)
