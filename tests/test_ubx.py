"""UBX NAV-PVT: fixes by the NMEA rules, mixed with NMEA on one stream, and an idle path that
decodes no position (pyubx2 is not even called while dormant)."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TRACES

from tcu.firmware.fix import Fix
from tcu.hal import Heartbeat, iter_fixes
from tcu.hal import ubx as ubx_module
from tcu.hal.ubx import UbxDecoder, UbxFramer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_ubx_trace import nav_pvt, nav_timeutc  # noqa: E402

DATA = Path(__file__).parent / "data"
T0 = int(datetime.datetime(2017, 1, 10, 0, 9, 41, tzinfo=datetime.UTC).timestamp() * 1000)
FIX = Fix(T0, 440688978, -1213142713, 3, 114480, 15, 12345, 12, None)


def decode(frames: bytes) -> list[Fix]:
    framer, decoder = UbxFramer(), UbxDecoder()
    return [f for frame in framer.feed(frames) if (f := decoder.fix(frame)) is not None]


def test_a_nav_pvt_is_a_fix_with_its_values() -> None:
    (fix,) = decode(nav_pvt(FIX, T0))
    assert fix == FIX


@pytest.mark.parametrize("frame", [
    nav_pvt(None, T0),  # acquiring: fixType 0, position zero
    nav_pvt(FIX, T0, fix_ok=False),  # gnssFixOK clear: the receiver does not trust it
    nav_pvt(Fix(T0, 0, 0, 3, 0, 0, 0, 5, None), T0),  # null island
    nav_pvt(FIX, T0, date_ok=False),  # no valid date and nothing to date it
])
def test_no_fix_without_validity_nor_at_zero_zero(frame: bytes) -> None:
    assert decode(frame) == []


def test_nav_timeutc_dates_a_nav_pvt_without_a_valid_date() -> None:
    (fix,) = decode(nav_timeutc(T0 - 1000) + nav_pvt(FIX, T0, date_ok=False))
    assert fix.time_ms == T0


def test_frames_cut_anywhere_and_noise_between() -> None:
    data = b"\xb5\x62\x01\x07junk" + nav_pvt(FIX, T0) + b"$GPTXT,01*00\r\n" + nav_pvt(FIX, T0 + 1000)
    framer, decoder = UbxFramer(), UbxDecoder()
    frames = [framer.feed(data[i:i + 5]) for i in range(0, len(data), 5)]
    fixes = [decoder.fix(f) for chunk in frames for f in chunk]
    assert [f.time_ms for f in fixes if f is not None] == [T0, T0 + 1000]


def test_the_ubx_log_and_the_mixed_log() -> None:
    ubx = list(iter_fixes(str(DATA / "gnss-ubx-nav-pvt.log")))
    assert len(ubx) == 71  # 72 epochs of ublox-8.log, one flagged gnssFixOK=0
    nmea = list(iter_fixes(str(TRACES / "ublox-8.log")))
    mixed = list(iter_fixes(str(DATA / "gnss-ubx-mixed.log")))
    assert len(mixed) == 24 and len({f.time_ms for f in mixed}) == 24  # one fix per epoch, not two
    assert [(f.time_ms, f.lat_e7, f.lon_e7) for f in mixed] == [(f.time_ms, f.lat_e7, f.lon_e7) for f in nmea[:24]]


def test_the_idle_path_never_parses_a_position(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a NAV-PVT was parsed while no position was needed")

    monkeypatch.setattr(ubx_module.UBXReader, "parse", refuse)
    stream = iter_fixes(str(DATA / "gnss-ubx-nav-pvt.log"), positions_needed=False)
    items = list(stream.items())
    beats = [item for item in items if isinstance(item, Heartbeat)]
    assert beats and len(beats) == len(items)  # no Fix while no position is needed
    assert sum(b.has_fix for b in beats) == 71 and stream.fixes_made == 0


def test_woken_on_a_ubx_heartbeat_the_first_fix_is_its_epoch() -> None:
    stream = iter_fixes(str(DATA / "gnss-ubx-nav-pvt.log"), positions_needed=False)
    items = stream.items()
    beat = next(b for b in items if isinstance(b, Heartbeat) and b.has_fix)
    stream.positions_needed = True
    first = next(i for i in items if isinstance(i, Fix))
    assert first.time_ms == beat.time_ms


def test_the_trace_maker_runs_without_docstrings() -> None:
    """python -OO drops __doc__, where the script's --help takes its description from."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "make_ubx_trace.py"
    result = subprocess.run([sys.executable, "-OO", str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "usage: make_ubx_trace.py" in result.stdout, result.stderr
