"""Replays of traces whose receiver time steps back, jumps forward, or is 1024 weeks old:
the virtual monotonic clock advances by elapsed receiver time only, so a crash session
ends at its 600 s bound with 600 / 2 located reports (+1), and every step is counted."""

from __future__ import annotations

from pathlib import Path

from conftest import TRACES

from tcu.emulator.replay import Replay, TriggerWindow
from tcu.firmware import services as sv
from tcu.firmware import transitions as tr
from tcu.firmware.events import Publish
from tcu.firmware.unit import Unit
from tcu.hal import iter_fixes
from tcu.hal.gnss_time import KNOWN_GOOD_EPOCH_MS, ROLLOVER_MS
from tcu.protocol import messages
from tcu.tools.replay_cmd import clock_summary


def splice(tmp_path: Path, names: list[str]) -> str:
    path = tmp_path / "spliced.log"
    path.write_bytes(b"".join((TRACES / name).read_bytes() for name in names))
    return str(path)


def crash_replay(trace: str) -> tuple[list[tuple[int, messages.Message]], Replay]:
    sent: list[tuple[int, messages.Message]] = []

    def sink(action: object, now_ms: int) -> None:
        if isinstance(action, Publish):
            sent.append((now_ms, messages.decode(action.payload)))

    replay = Replay(Unit(), [TriggerWindow(sv.CRASH, 5.0, None)], sink)
    with iter_fixes(trace, positions_needed=False) as stream:
        replay.run_stream(stream)
    return sent, replay


def assert_bounded_crash(sent: list[tuple[int, messages.Message]], t0_ms: int) -> messages.Message:
    (start_at, start), = [(t, m) for t, m in sent if m.type == messages.T_SESSION_START]
    (end_at, end), = [(t, m) for t, m in sent if m.type == messages.T_SESSION_END]
    located = [t for t, m in sent if m.located]
    assert start_at == t0_ms + 5000 and end.reason == tr.REASON_TIME_BOUND
    assert end_at - start_at == 600_000  # exactly its bound on the monotonic clock
    assert len(located) in (300, 301) and all(start_at <= t < end_at for t in located)
    return start


def test_a_log_concatenated_ten_times_steps_back_nine_times_and_the_crash_ends_at_its_bound(tmp_path: Path) -> None:
    sent, replay = crash_replay(splice(tmp_path, ["ublox-8.log"] * 10))
    assert_bounded_crash(sent, replay.stats.first_fix_ms or 0)
    assert (replay.stats.steps_back, replay.stats.steps_forward) == (9, 0)
    assert "stepped back 9 times" in clock_summary(replay.stats)


def test_a_trace_spliced_forward_by_years_and_back_is_neither_cut_nor_stretched(tmp_path: Path) -> None:
    names = ["ublox-8.log", "quectel-l76k-dual.log"] * 3  # 2017, then 2026: +9 years, then back
    sent, replay = crash_replay(splice(tmp_path, names))
    start = assert_bounded_crash(sent, replay.stats.first_fix_ms or 0)
    assert (replay.stats.steps_forward, replay.stats.steps_back) == (3, 2)
    assert start.time_source == messages.TIME_GNSS


def test_a_week_rollover_log_is_corrected_and_counted(tmp_path: Path) -> None:
    sent, replay = crash_replay(splice(tmp_path, ["iTrek.log"] * 20))  # 2005: more than 1024 weeks old
    start = assert_bounded_crash(sent, replay.stats.first_fix_ms or 0)
    assert replay.stats.rollovers > 0 and replay.stats.steps_back == 19
    assert KNOWN_GOOD_EPOCH_MS - ROLLOVER_MS <= (start.time or 0) * 1000 < KNOWN_GOOD_EPOCH_MS
    assert "corrected for GPS week rollover" in clock_summary(replay.stats)


def test_the_commands_report_the_steps_they_saw(tmp_path: Path) -> None:
    """`tcu replay`'s summary and `tcu fixes`'s stderr say how often the receiver time stepped."""
    import subprocess
    import sys

    trace = splice(tmp_path, ["ublox-8.log"] * 3)  # steps back at each of the 2 splices
    run = [sys.executable, "-m", "tcu.tools.cli"]
    fixes = subprocess.run([*run, "fixes", trace], capture_output=True, text=True, timeout=60)
    assert fixes.returncode == 0 and "receiver time stepped back 2 times" in fixes.stderr, fixes.stderr
    replay = subprocess.run([*run, "replay", trace, "--trigger", "crash@5", "--quiet"], capture_output=True,
                            text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert "replay: receiver time stepped back 2 times and jumped forward 0 times" in replay.stderr, replay.stderr
