"""The unit's core: sessions by service, bounds, indicator, and the privacy invariant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portable.portable_support import feed_fixes, fix_at  # shared with the MicroPython tests
from wire_check import assert_valid

from tcu.firmware import services as sv
from tcu.firmware import transitions as tr
from tcu.firmware.events import Cancel, FixEvent, Indicator, Publish, Shutdown, Tick, TriggerOff, TriggerOn
from tcu.firmware.fix import Fix
from tcu.firmware.unit import Refused, Unit
from tcu.protocol import messages

T0 = 1_700_000_000_000


def publishes(actions: list) -> list[messages.Message]:
    payloads = [a.payload for a in actions if isinstance(a, Publish)]
    for payload in payloads:
        assert_valid(payload)  # every message the unit sends conforms to protocol/tcu.cddl
    return [messages.decode(p) for p in payloads]


def test_a_dormant_unit_sends_nothing_and_keeps_no_fix() -> None:
    unit = Unit()
    assert feed_fixes(unit, T0, 100) == []
    assert unit.next_timer() is None and not unit.indicator
    assert not any(isinstance(getattr(unit, slot), Fix) for slot in Unit.__slots__)


def test_crash_reports_at_once_then_every_period_until_its_bound() -> None:
    unit = Unit()
    started = unit.handle(TriggerOn(sv.CRASH), T0)
    assert [type(a) for a in started] == [Publish, Indicator] and started[1].on
    start = publishes(started)[0]
    assert (start.type, start.purpose, start.trigger, start.time) == (
        messages.T_SESSION_START, sv.P_CRASH_NOTIFICATION, sv.CRASH, T0 // 1000)
    assert unit.handle(TriggerOff(sv.CRASH), T0 + 500) == []  # the airbag input clearing changes nothing
    msgs = publishes(feed_fixes(unit, T0 + 1000, 700))
    reports = [m for m in msgs if m.located]
    assert reports[0].dt == 1  # the first fix after the trigger
    dts = [m.dt for m in reports if m.dt is not None]
    assert [b - a for a, b in zip(dts, dts[1:], strict=False)] == [2] * (len(reports) - 1)
    assert dts[-1] < 600 and msgs[-1].type == messages.T_SESSION_END
    assert msgs[-1].reason == tr.REASON_TIME_BOUND and not unit.indicator and not unit.sessions


def test_theft_tracking_follows_the_alarm_input() -> None:
    unit = Unit()
    unit.handle(TriggerOn(sv.THEFT), T0)
    msgs = publishes(feed_fixes(unit, T0, 35))
    assert [m.dt for m in msgs if m.located] == [0, 10, 20, 30]
    ended = unit.handle(TriggerOff(sv.THEFT), T0 + 35000)
    assert publishes(ended)[0].reason == tr.REASON_CLEARED
    assert isinstance(ended[-1], Indicator) and not ended[-1].on
    assert feed_fixes(unit, T0 + 36000, 30) == []


def test_roadside_sends_one_position_without_motion_and_ends() -> None:
    unit = Unit()
    unit.handle(TriggerOn(sv.ROADSIDE), T0)
    out = feed_fixes(unit, T0, 5)
    msgs = publishes(out)
    assert [m.type for m in msgs] == [messages.T_REPORT, messages.T_SESSION_END]
    assert msgs[0].speed_kmh is None and msgs[0].course_2deg is None and msgs[0].ext == {}
    assert msgs[1].reason == tr.REASON_SAMPLE_BOUND
    assert len(out[0].payload) <= 16


def test_fields_follow_the_purpose() -> None:
    unit = Unit()
    unit.handle(TriggerOn(sv.CRASH), T0)
    crash = publishes(unit.handle(FixEvent(fix_at(T0)), T0))[0]
    assert crash.speed_kmh == 50 and crash.course_2deg == 45
    assert crash.ext == {messages.EXT_ALT_M: 519, messages.EXT_MODE: 3, messages.EXT_SATS: 11, messages.EXT_HDOP_D: 9}
    unit = Unit()
    unit.handle(TriggerOn(sv.THEFT), T0)
    theft = publishes(unit.handle(FixEvent(fix_at(T0)), T0))[0]
    assert theft.speed_kmh == 50 and theft.ext == {}


def test_the_occupant_cannot_cancel_a_crash_session_but_can_cancel_sos() -> None:
    unit = Unit()
    unit.handle(TriggerOn(sv.CRASH), T0)
    with pytest.raises(Refused, match="cannot cancel"):
        unit.handle(Cancel(sv.CRASH), T0 + 1000)
    assert sv.CRASH in unit.sessions
    unit.handle(TriggerOn(sv.SOS), T0)
    assert publishes(unit.handle(Cancel(sv.SOS), T0 + 1000))[0].reason == tr.REASON_CANCELLED


def test_shutdown_ends_every_session() -> None:
    unit = Unit()
    unit.handle(TriggerOn(sv.CRASH), T0)
    unit.handle(TriggerOn(sv.THEFT), T0)
    msgs = publishes(unit.handle(Shutdown(), T0 + 5000))
    assert sorted(m.reason or 0 for m in msgs) == [tr.REASON_SHUTDOWN] * 2 and not unit.sessions


def test_every_active_state_answers_every_input_and_unknown_pairs_raise() -> None:
    inputs = (tr.ON, tr.OFF, tr.TIME_UP, tr.SAMPLES_DONE, tr.CANCEL, tr.REMOTE_CANCEL, tr.SHUTDOWN)
    active_state = {sv.WHILE_HELD: tr.HELD, sv.RUN_TO_BOUND: tr.LATCHED, sv.REMOTE: tr.REMOTE_ACTIVE}
    for (mode, _), table in tr.TABLE.items():
        assert all((active_state[mode], event) in table for event in inputs)
    assert tr.TABLE[(sv.REMOTE, False)][(tr.REMOTE_ACTIVE, tr.CANCEL)][0] == tr.REFUSE  # never the occupant
    with pytest.raises(tr.TransitionError):
        tr.step(sv.WHILE_HELD, False, tr.IDLE, tr.TIME_UP)


events = st.lists(st.tuples(
    st.sampled_from(["on", "off", "fix", "tick", "cancel"]),
    st.sampled_from(sorted(sv.TRIGGER_NAMES)), st.integers(0, 30_000)), max_size=60)


@settings(max_examples=300)
@given(events)
def test_no_located_uplink_outside_a_session(script: list[tuple[str, int, int]]) -> None:
    unit, now = Unit(), T0
    for op, kind, step in script:
        now += step
        active_before = bool(unit.sessions)
        try:
            event = {"on": TriggerOn(kind), "off": TriggerOff(kind), "fix": FixEvent(fix_at(now)),
                     "tick": Tick(), "cancel": Cancel(kind)}[op]
            actions = unit.handle(event, now)
        except Refused:
            continue
        located = [a for a in actions if isinstance(a, Publish) and a.located]
        if located:
            assert op == "fix" and active_before
        assert unit.indicator == bool(unit.sessions)


def test_overlapping_sessions_combine_and_end_independently() -> None:
    unit = Unit()
    unit.handle(TriggerOn(sv.THEFT), T0)
    theft_sid = unit.sessions[sv.THEFT].sid
    first = publishes(unit.handle(FixEvent(fix_at(T0)), T0))
    assert first[0].ext == {}  # theft alone: position and motion only
    unit.handle(TriggerOn(sv.CRASH), T0 + 1000)
    crash_sid = unit.sessions[sv.CRASH].sid
    msgs = publishes(feed_fixes(unit, T0 + 1000, 11))
    reports = [m for m in msgs if m.located]
    # one stream, each session on its own grid: the crash every 2 s from its first sample,
    # the theft every 10 s from its own; a report serves exactly the sessions due, led by the
    # highest priority one, with the union of their fields (the crash adds altitude)
    assert [(m.sid, m.dt) for m in reports] == [(crash_sid, 0), (crash_sid, 2), (crash_sid, 4), (crash_sid, 6),
                                                (crash_sid, 8), (theft_sid, 10), (crash_sid, 10)]
    assert not any(messages.EXT_SESSIONS in m.ext for m in reports)  # their grids never met here
    assert [messages.EXT_ALT_M in m.ext for m in reports] == [True] * 5 + [False, True]  # theft alone: no altitude
    assert (unit.sessions[sv.CRASH].samples, unit.sessions[sv.THEFT].samples) == (6, 2)
    ended = publishes(unit.handle(TriggerOff(sv.THEFT), T0 + 11_500))
    assert [(m.type, m.sid) for m in ended] == [(messages.T_SESSION_END, theft_sid)]
    alone = [m for m in publishes(feed_fixes(unit, T0 + 12_000, 4)) if m.located]
    assert alone and all(messages.EXT_SESSIONS not in m.ext for m in alone)
