"""The unit's core in the portable subset: sessions, bounds, indicator, transitions.

Runs under pytest on CPython and under scripts/micropython_tests.py on MicroPython.
"""

from portable_support import LAT, LON, T0, feed_fixes, fix_at, of_type, publishes, raises, raises_with

from tcu.firmware import services as sv
from tcu.firmware import transitions as tr
from tcu.firmware.errors import ProtocolError, TcuError, UsageError
from tcu.firmware.events import (
    Cancel,
    Downlink,
    FixEvent,
    Indicator,
    Publish,
    Shutdown,
    Tick,
    TriggerOff,
    TriggerOn,
)
from tcu.firmware.fix import MODE_3D, Fix
from tcu.firmware.unit import Refused, Unit
from tcu.protocol import messages

INPUTS = (tr.ON, tr.OFF, tr.TIME_UP, tr.SAMPLES_DONE, tr.CANCEL, tr.REMOTE_CANCEL, tr.SHUTDOWN)
ACTIVE = {sv.WHILE_HELD: tr.HELD, sv.RUN_TO_BOUND: tr.LATCHED, sv.REMOTE: tr.REMOTE_ACTIVE}


def test_a_dormant_unit_sends_nothing_for_fixes():
    unit = Unit()
    assert feed_fixes(unit, T0, 120) == []
    assert unit.next_timer() is None
    assert not unit.indicator and not unit.sessions
    assert unit.handle(Tick(), T0 + 200000) == []


def test_a_dormant_unit_keeps_no_fix():
    unit = Unit()
    unit.handle(FixEvent(fix_at(T0)), T0)
    for slot in Unit.__slots__:
        assert not isinstance(getattr(unit, slot), Fix)


def test_crash_session_start_message():
    unit = Unit()
    started = unit.handle(TriggerOn(sv.CRASH), T0)
    assert [type(a) for a in started] == [Publish, Indicator]
    assert started[1].on and unit.indicator
    assert not started[0].located and started[0].priority == 0
    start = publishes(started)[0]
    assert start.type == messages.T_SESSION_START
    assert (start.purpose, start.trigger, start.time) == (sv.P_CRASH_NOTIFICATION, sv.CRASH, T0 // 1000)
    assert start.case is None and start.sid == started[0].sid
    assert unit.next_timer() == T0 + 600 * 1000


def test_crash_reports_every_period_then_ends_at_its_bound():
    unit = Unit()
    unit.handle(TriggerOn(sv.CRASH), T0)
    assert unit.handle(TriggerOff(sv.CRASH), T0 + 500) == []  # the airbag input clearing changes nothing
    msgs = publishes(feed_fixes(unit, T0 + 1000, 700))
    reports = [m for m in msgs if m.located]
    assert reports[0].dt == 1
    dts = [m.dt for m in reports if m.dt is not None]
    gaps = [dts[i + 1] - dts[i] for i in range(len(dts) - 1)]
    assert gaps == [2] * len(gaps) and len(dts) == len(reports)
    assert dts[-1] < 600 and len(reports) == 300
    assert msgs[-1].type == messages.T_SESSION_END and msgs[-1].reason == tr.REASON_TIME_BOUND
    assert [m for m in msgs if not m.located] == [msgs[-1]]  # nothing else but the end
    assert not unit.indicator and not unit.sessions and unit.next_timer() is None


def test_crash_report_carries_every_field_of_its_purpose():
    unit = Unit()
    unit.handle(TriggerOn(sv.CRASH), T0)
    actions = unit.handle(FixEvent(fix_at(T0 + 3000)), T0 + 3000)
    assert len(actions) == 1 and actions[0].located
    report = publishes(actions)[0]
    assert (report.dt, report.lat_e7, report.lon_e7) == (3, LAT, LON)
    assert (report.speed_kmh, report.course_2deg) == (50, 45)
    assert report.ext == {messages.EXT_ALT_M: 519, messages.EXT_MODE: MODE_3D, messages.EXT_SATS: 11,
                          messages.EXT_HDOP_D: 9}


def test_crash_samples_on_its_period_grid_within_half_a_fix_interval():
    unit = Unit()
    unit.handle(TriggerOn(sv.CRASH), T0)
    assert len(unit.handle(FixEvent(fix_at(T0)), T0)) == 1  # the grid: T0 + k * 2 s
    assert unit.handle(FixEvent(fix_at(T0 + 1000)), T0 + 1000) == []  # 1 s early, fixes 1 s apart
    assert unit.handle(FixEvent(fix_at(T0 + 1200)), T0 + 1200) == []  # 0.8 s early, fixes 0.2 s apart
    assert len(unit.handle(FixEvent(fix_at(T0 + 1950)), T0 + 1950)) == 1  # 50 ms early, fixes 0.75 s apart
    assert unit.handle(FixEvent(fix_at(T0 + 2950)), T0 + 2950) == []
    assert len(unit.handle(FixEvent(fix_at(T0 + 4000)), T0 + 4000)) == 1  # the next grid point, not 1.95 + 2


def test_a_1hz_receiver_serves_a_2s_period_every_2s_whatever_the_phase():
    for phase_ms in (0, 1, 300, 500, 999):
        unit = Unit()
        unit.handle(TriggerOn(sv.CRASH), T0 + phase_ms)
        msgs = publishes(feed_fixes(unit, T0 + 1000, 60))
        reports = [m for m in msgs if m.located]
        gaps = [(reports[i + 1].dt or 0) - (reports[i].dt or 0) for i in range(len(reports) - 1)]
        assert len(reports) == 30 and set(gaps) == {2}, (phase_ms, gaps)


def test_theft_tracks_while_the_input_is_held_and_ends_when_it_clears():
    unit = Unit()
    unit.handle(TriggerOn(sv.THEFT), T0)
    msgs = publishes(feed_fixes(unit, T0, 35))
    assert [m.dt for m in msgs if m.located] == [0, 10, 20, 30]
    assert all(m.ext == {} and m.speed_kmh == 50 for m in msgs if m.located)  # motion, nothing more
    ended = unit.handle(TriggerOff(sv.THEFT), T0 + 35000)
    assert publishes(ended)[0].reason == tr.REASON_CLEARED
    assert isinstance(ended[-1], Indicator) and not ended[-1].on
    assert feed_fixes(unit, T0 + 36000, 30) == []


def test_theft_input_held_again_does_not_restart_the_session():
    unit = Unit()
    unit.handle(TriggerOn(sv.THEFT), T0)
    sid = unit.sessions[sv.THEFT].sid
    assert unit.handle(TriggerOn(sv.THEFT), T0 + 1000) == []
    assert unit.sessions[sv.THEFT].sid == sid


def test_roadside_sends_a_single_position_only_fix_and_ends():
    unit = Unit()
    unit.handle(TriggerOn(sv.ROADSIDE), T0)
    out = feed_fixes(unit, T0, 5)
    msgs = publishes(out)
    assert [m.type for m in msgs] == [messages.T_REPORT, messages.T_SESSION_END]
    report = msgs[0]
    assert (report.lat_e7, report.lon_e7) == (LAT, LON)
    assert report.speed_kmh is None and report.course_2deg is None and report.ext == {}
    assert msgs[1].reason == tr.REASON_SAMPLE_BOUND
    assert len(out[0].payload) <= 16
    assert not unit.sessions and not unit.indicator


def test_occupant_cannot_cancel_a_crash_session():
    unit = Unit()
    unit.handle(TriggerOn(sv.CRASH), T0)
    raises_with(Refused, "cannot cancel", unit.handle, Cancel(sv.CRASH), T0 + 1000)
    assert sv.CRASH in unit.sessions and unit.indicator


def test_occupant_can_cancel_sos():
    unit = Unit()
    unit.handle(TriggerOn(sv.SOS), T0)
    actions = unit.handle(Cancel(sv.SOS), T0 + 1000)
    assert publishes(actions)[0].reason == tr.REASON_CANCELLED
    assert not unit.sessions and of_type(actions, Indicator)[0].on is False


def test_cancel_without_a_session_is_refused():
    raises_with(Refused, "no session", Unit().handle, Cancel(sv.SOS), T0)


def test_refused_is_a_tcu_error():
    err = raises(TcuError, Unit().handle, Cancel(sv.ROADSIDE), T0)
    assert isinstance(err, Refused)


def test_shutdown_ends_every_session():
    unit = Unit()
    unit.handle(TriggerOn(sv.CRASH), T0)
    unit.handle(TriggerOn(sv.THEFT), T0)
    unit.handle(TriggerOn(sv.SOS), T0)
    actions = unit.handle(Shutdown(), T0 + 5000)
    msgs = publishes(actions)
    assert [m.reason for m in msgs] == [tr.REASON_SHUTDOWN] * 3
    assert [m.type for m in msgs] == [messages.T_SESSION_END] * 3
    assert not unit.sessions and not unit.indicator and isinstance(actions[-1], Indicator)
    assert unit.handle(Shutdown(), T0 + 6000) == []


def test_shutdown_sends_higher_priority_ends_first():
    unit = Unit()
    unit.handle(TriggerOn(sv.ROADSIDE), T0)
    unit.handle(TriggerOn(sv.THEFT), T0)
    unit.handle(TriggerOn(sv.CRASH), T0)
    priorities = [a.priority for a in unit.handle(Shutdown(), T0 + 1) if isinstance(a, Publish)]
    assert priorities == sorted(priorities) == [0, 1, 2]


def test_sequence_numbers_increase_across_sessions():
    unit = Unit()
    actions = unit.handle(TriggerOn(sv.CRASH), T0)
    actions += unit.handle(TriggerOn(sv.THEFT), T0)
    actions += unit.handle(FixEvent(fix_at(T0)), T0)
    seqs = [a.seq for a in actions if isinstance(a, Publish)]
    # two session starts, then one report that serves both overlapping sessions
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 3
    assert [m.seq for m in publishes(actions)] == seqs


def test_unknown_event_and_trigger_raise_usage_error():
    unit = Unit()
    raises_with(UsageError, "unknown event", unit.handle, object(), T0)
    raises_with(UsageError, "no service", unit.handle, TriggerOn(99), T0)
    assert sv.trigger_code("crash") == sv.CRASH
    raises_with(UsageError, "started only by a signed backend command", sv.trigger_code, "stolen")


def test_a_downlink_to_a_unit_without_keys_is_rejected():
    actions = Unit().handle(Downlink(b"\xa0"), T0)
    assert len(actions) == 1
    response = publishes(actions)[0]
    assert response.type == messages.T_COMMAND_RESPONSE and response.result == messages.RESULT_REJECTED


def test_the_transitions_table_answers_every_input_in_every_active_state():
    assert len(tr.TABLE) == 5
    for key in tr.TABLE:
        mode, cancellable = key
        table = tr.TABLE[key]
        state = ACTIVE[mode]
        for event in INPUTS:
            effect, next_state = tr.step(mode, cancellable, state, event)
            assert (state, event) in table
            assert effect in (tr.NOTHING, tr.START, tr.END, tr.REFUSE)
            if effect == tr.END:
                assert next_state == tr.IDLE and event in tr.END_REASON_OF_INPUT
            else:
                assert next_state == state  # a session never silently changes kind
        assert tr.step(mode, cancellable, state, tr.SHUTDOWN) == (tr.END, tr.IDLE)
        assert tr.step(mode, cancellable, state, tr.TIME_UP) == (tr.END, tr.IDLE)
        assert tr.step(mode, cancellable, tr.IDLE, tr.ON) == (tr.START, state)


def test_the_transitions_table_who_may_end_what():
    for key in tr.TABLE:
        mode, cancellable = key
        state = ACTIVE[mode]
        cancel = tr.step(mode, cancellable, state, tr.CANCEL)[0]
        assert cancel == (tr.END if cancellable and mode != sv.REMOTE else tr.REFUSE)
        remote = tr.step(mode, cancellable, state, tr.REMOTE_CANCEL)[0]
        assert remote == (tr.END if mode == sv.REMOTE else tr.REFUSE)
        off = tr.step(mode, cancellable, state, tr.OFF)[0]
        assert off == (tr.END if mode == sv.WHILE_HELD else tr.NOTHING)


def test_the_transitions_table_refuses_unknown_pairs():
    err = raises(tr.TransitionError, tr.step, sv.WHILE_HELD, False, tr.IDLE, tr.TIME_UP)
    assert "idle" in str(err) and isinstance(err, TcuError)
    raises(tr.TransitionError, tr.step, sv.RUN_TO_BOUND, True, tr.IDLE, tr.SAMPLES_DONE)


def test_every_configured_service_has_a_table_and_names():
    for code in sv.default_services():
        service = sv.default_services()[code]
        assert service.trigger == code
        assert (service.mode, service.occupant_can_cancel) in tr.TABLE
        assert service.name == sv.TRIGGER_NAMES[code] and service.purpose in sv.PURPOSE_NAMES
        assert service.fields & sv.F_POSITION


def test_fix_equality_is_by_value():
    assert fix_at(T0) == fix_at(T0)
    assert fix_at(T0) != fix_at(T0 + 1)
    assert not (fix_at(T0) == T0) and fix_at(T0) != "fix"
    assert repr(Fix(1, 2, 3)) == "Fix(1, 2, 3, mode=2)"


def test_error_hierarchy():
    for cls in (UsageError, ProtocolError, Refused, tr.TransitionError):
        assert issubclass(cls, TcuError) and issubclass(cls, Exception)
