"""The promise on every recorded receiver log: located uplinks only inside trigger windows,
and with no trigger not one byte of position leaves the unit (nor is one even decoded)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import TRACES
from gpsd_harness import GpsFake, have_gpsfake

from tcu.emulator.replay import Replay, ReplayStats, TriggerWindow
from tcu.firmware import services as sv
from tcu.firmware.events import Publish
from tcu.firmware.unit import Unit
from tcu.hal import iter_fixes
from tcu.hal.gnss_time import RolloverCorrector
from tcu.hal.gpsd import GpsdStream
from tcu.protocol import messages

LOGS = sorted(TRACES.glob("*.log"))
# UBX NAV-PVT only, NMEA with NAV-PVT, and the foreign framings (tests/data/gnss-*).
LOCAL = sorted((Path(__file__).parent / "data").glob("gnss-*"))
SERVICES = sv.default_services()


def session_window(window: TriggerWindow) -> tuple[float, float]:
    """Seconds after the first fix in which this trigger may yield positions: the input's
    window for tracking that follows its input (theft), the service's own bound after the
    trigger for the others (a crash keeps reporting after the airbag input clears)."""
    service = SERVICES[window.kind]
    if service.mode == sv.WHILE_HELD and window.duration_s is not None:
        return window.start_s, window.start_s + window.duration_s
    return window.start_s, window.start_s + service.bound_s


def replay(log: Path | str, windows: list[TriggerWindow]) -> tuple[list[messages.Message], int, ReplayStats]:
    sent: list[bytes] = []
    stats = Replay(Unit(), windows, lambda action, now: sent.append(action.payload)
                   if isinstance(action, Publish) else None).run_stream(iter_fixes(str(log), positions_needed=False))
    return [messages.decode(p) for p in sent], sum(map(len, sent)), stats


@pytest.mark.parametrize("log", LOCAL, ids=[p.name for p in LOCAL])
def test_no_trigger_no_position_ubx_and_foreign_logs(log: Path) -> None:
    msgs, sent_bytes, stats = replay(log, [])
    assert msgs == [] and sent_bytes == 0 and stats.fixes == 0  # type: ignore[attr-defined]


@pytest.mark.skipif(not have_gpsfake(), reason="gpsd/gpsfake missing")
def test_no_trigger_no_position_through_gpsd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit on a real gpsd (gpsfake on a NMEA log): dormant, it decodes no TPV at all."""
    monkeypatch.setattr("tcu.hal.gpsd.tpv_fix", lambda *a: pytest.fail("a TPV was decoded while dormant"))
    with GpsFake(TRACES / "ublox-8.log") as fake:
        stream = GpsdStream(fake.url, positions_needed=False, reconnect=False)
        sent: list[bytes] = []
        stats = Replay(Unit(), [], lambda action, now: sent.append(action.payload)
                       if isinstance(action, Publish) else None).run_stream(stream)
    assert sent == [] and stats.fixes == 0 and stats.dormant_seconds >= 70


@pytest.mark.parametrize("log", LOGS, ids=[p.name for p in LOGS])
def test_no_trigger_no_position(log: Path) -> None:
    msgs, sent_bytes, stats = replay(log, [])
    assert msgs == [] and sent_bytes == 0
    assert stats.fixes == 0  # the HAL never even parsed a position


@pytest.mark.parametrize("log", LOGS, ids=[p.name for p in LOGS])
def test_located_uplinks_fall_inside_random_windows(log: Path) -> None:
    rng = random.Random(log.name)
    for _ in range(3):
        windows = [TriggerWindow(rng.choice(sv.LOCAL_TRIGGERS), rng.uniform(0, 60), rng.uniform(1, 40))
                   for _ in range(rng.randint(1, 3))]
        msgs, _, stats = replay(log, windows)
        if stats.first_fix_ms is None:
            assert msgs == []
            continue
        t0 = RolloverCorrector().correct(stats.first_fix_ms) // 1000  # report times are wall (GNSS) time
        opened = {m.sid: m for m in msgs if m.type == messages.T_SESSION_START}
        for m in msgs:
            if not m.located:
                continue
            start = opened[m.sid]
            assert start.time is not None and m.dt is not None and start.trigger is not None
            when = start.time + m.dt
            inside = [w for w in windows if w.kind == start.trigger
                      and t0 + session_window(w)[0] - 1 <= when <= t0 + session_window(w)[1] + 1]
            assert inside, "%s: a %s report at +%d s is outside %s" % (
                log.name, sv.TRIGGER_NAMES[start.trigger], when - t0, windows)
