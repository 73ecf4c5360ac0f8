"""Bounds run on the monotonic clock: the wall clock stepping (+-1 year, back to 1970, NTP,
a GNSS fix arriving) while sessions run moves timestamps only, never a bound or a period.
Also issue 18's session semantics: samples on each session's own grid, and a sample bound
that counts only the samples a session asked for."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from portable.portable_support import fix_at, gnss_unit

from tcu.firmware import services as sv
from tcu.firmware import transitions as tr
from tcu.firmware.clock import WallTime
from tcu.firmware.events import Downlink, FixEvent, Publish, Tick, TriggerOn
from tcu.firmware.unit import Unit
from tcu.protocol import commands as cmd
from tcu.protocol import cose, messages

T0 = 1_700_000_000_000
YEAR_MS = 365 * 86_400_000
KEY = bytes(range(32))
UNIT = "unit-0001"

steps = st.lists(st.tuples(st.integers(0, 700), st.one_of(
    st.integers(-YEAR_MS, YEAR_MS), st.just(-T0), st.integers(-T0, 0)),
    st.sampled_from([messages.TIME_GNSS, messages.TIME_NTP, messages.TIME_SYSTEM])), max_size=12)


def run(unit: Unit, kinds: list[int], seconds: int, wall_steps: list) -> list[tuple[int, messages.Message]]:
    """One fix a second on the monotonic clock; the wall clock steps at the given seconds."""
    out = []
    for kind in kinds:
        out += [(T0, a) for a in unit.handle(TriggerOn(kind), T0, WallTime(T0, messages.TIME_GNSS))]
    offset = 0
    by_second = {}
    for second, step, source in wall_steps:
        by_second[second] = (step, source)
    for i in range(1, seconds):
        now = T0 + i * 1000
        wall = None
        if i in by_second:
            offset, source = by_second[i][0], by_second[i][1]
            wall = WallTime(max(0, now + offset), source)
        timer = unit.next_timer()
        if timer is not None and timer <= now:
            out += [(now, a) for a in unit.handle(Tick(), now, wall)]
            wall = None
        out += [(now, a) for a in unit.handle(FixEvent(fix_at(now)), now, wall)]
    return [(t, messages.decode(a.payload)) for t, a in out if isinstance(a, Publish)]


@settings(max_examples=40, deadline=None)
@given(steps)
def test_wall_clock_steps_never_move_a_bound(wall_steps: list) -> None:
    unit = Unit()
    msgs = run(unit, [sv.CRASH, sv.THEFT], 700, wall_steps)
    crash = [t for t, m in msgs if m.type == messages.T_SESSION_END and m.reason == tr.REASON_TIME_BOUND]
    assert crash == [T0 + 600_000]  # exactly at its bound in monotonic time, whatever the wall did
    crash_reports = [t for t, m in msgs if m.located and (m.sid == 1 or 1 in m.ext.get(messages.EXT_SESSIONS, []))]
    assert len(crash_reports) == 300 and max(crash_reports) < T0 + 600_000  # 0 reports outside the bound
    theft_reports = [t for t, m in msgs if m.located and (m.sid == 2 or 2 in m.ext.get(messages.EXT_SESSIONS, []))]
    assert len(theft_reports) == 70  # every 10 s on its own grid, steps or not
    gaps = {b - a for a, b in zip(theft_reports, theft_reports[1:], strict=False)}
    assert gaps == {10_000}


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 999))
def test_sos_overlapping_a_crash_reaches_its_time_bound_not_its_sample_bound(phase_ms: int) -> None:
    unit = Unit()
    unit.handle(TriggerOn(sv.CRASH), T0)
    unit.handle(TriggerOn(sv.SOS), T0 + phase_ms)
    ends: dict[int, tuple[int, int]] = {}
    combined = 0
    for i in range(1, 1000):
        now = T0 + i * 1000
        actions = []
        timer = unit.next_timer()
        if timer is not None and timer <= now:
            actions += unit.handle(Tick(), now)
        actions += unit.handle(FixEvent(fix_at(now)), now)
        for msg in (messages.decode(a.payload) for a in actions if isinstance(a, Publish)):
            if msg.type == messages.T_SESSION_END:
                ends[msg.sid] = (now, msg.reason if msg.reason is not None else -1)
            combined += bool(msg.located and msg.ext.get(messages.EXT_SESSIONS))
    assert ends[2][1] == tr.REASON_TIME_BOUND  # 900 s, not 200 samples of the shared stream
    assert 900_000 <= ends[2][0] - (T0 + phase_ms) < 901_000  # at the first Tick at or after it
    assert ends[1] == (T0 + 600_000, tr.REASON_TIME_BOUND)
    assert combined > 0  # where their grids meet, one report serves both


def hmac_command(not_before: int, not_after: int, until: int, counter: int = 1) -> bytes:
    command = cmd.Command(UNIT, counter, not_before, not_after, cmd.CMD_TRACK_STOLEN,
                          {cmd.ARG_CASE: "case-1", cmd.ARG_UNTIL: until})
    return cmd.seal_command(command, b"k", cose.ALG_HMAC_256_256, KEY)


def verifier() -> cmd.CommandVerifier:
    return cmd.CommandVerifier(UNIT, [cmd.BackendKey(b"k", cose.ALG_HMAC_256_256, KEY)])


def test_untrusted_time_tracks_no_longer_than_until_minus_not_after_and_samples_only_once_trusted() -> None:
    unit = Unit(verifier=verifier())  # no wall time yet: untrusted
    nb, na, until = 1_800_000_000 - 60, 1_800_000_000 + 300, 1_800_000_000 + 3600
    actions = unit.handle(Downlink(hmac_command(nb, na, until)), T0)
    response = [messages.decode(a.payload) for a in actions if isinstance(a, Publish)][-1]
    assert response.result == messages.RESULT_PROVISIONAL
    session = unit.sessions[sv.STOLEN]
    assert session.end_ms == T0 + (until - na) * 1000  # the shortest reading of the window
    assert not [a for a in unit.handle(FixEvent(fix_at(T0 + 1000)), T0 + 1000) if isinstance(a, Publish)]
    # a GNSS fix: the command was received 10 s before, inside its window; its end moves to until
    wall = WallTime(1_800_000_010_000, messages.TIME_GNSS)
    located = [a for a in unit.handle(FixEvent(fix_at(T0 + 10_000)), T0 + 10_000, wall) if isinstance(a, Publish)]
    assert len(located) == 1 and located[0].located
    assert session.end_ms == T0 + 10_000 + (until * 1000 - wall.ms)


def test_untrusted_time_a_command_found_outside_its_window_ends_without_a_report() -> None:
    unit = Unit(verifier=verifier())
    unit.handle(Downlink(hmac_command(1_800_000_000, 1_800_000_300, 1_800_003_600)), T0,
                WallTime(0, messages.TIME_SYSTEM))  # the Pi booted in 1970
    wall = WallTime(1_800_086_400_000, messages.TIME_GNSS)  # a day after its window: delivered late
    actions = unit.handle(FixEvent(fix_at(T0 + 5000)), T0 + 5000, wall)
    msgs = [messages.decode(a.payload) for a in actions if isinstance(a, Publish)]
    assert [(m.type, m.reason) for m in msgs] == [(messages.T_SESSION_END, tr.REASON_COMMAND_WINDOW)]
    assert not unit.sessions


def test_untrusted_time_never_starts_tracking_when_until_is_not_after_the_window() -> None:
    unit = Unit(verifier=verifier())
    actions = unit.handle(Downlink(hmac_command(1_800_000_000, 1_800_000_300, 1_800_000_300)), T0)
    response = [messages.decode(a.payload) for a in actions if isinstance(a, Publish)][-1]
    assert (response.result, response.reason) == (messages.RESULT_REJECTED, cmd.R_POLICY) and not unit.sessions


def test_trusted_time_checks_the_window_and_places_until_on_the_monotonic_clock() -> None:
    unit = gnss_unit(verifier=verifier())
    late = unit.handle(Downlink(hmac_command(T0 // 1000 - 600, T0 // 1000 - 300, T0 // 1000 + 3600)), T0)
    assert [messages.decode(a.payload).reason for a in late if isinstance(a, Publish)] == [cmd.R_EXPIRED]
    unit.handle(Downlink(hmac_command(T0 // 1000 - 60, T0 // 1000 + 300, T0 // 1000 + 3600, 2)), T0)
    assert unit.sessions[sv.STOLEN].end_ms == T0 + 3_600_000
    start = unit.sessions[sv.STOLEN]
    unit.handle(Tick(), T0 + 1000, WallTime(0, messages.TIME_SYSTEM))  # the clock steps back to 1970
    assert unit.sessions[sv.STOLEN].end_ms == start.end_ms  # the bound did not move
