"""`tcu replay-serial --retime`: a recorded trace moved to the present, positions and pace kept."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcu.hal import NmeaFramer
from tcu.hal.framer import nmea_checksum
from tcu.hal.retime import Retimer
from tcu.tools import replay_serial_cmd
from tcu.tools.cli import main

UTC = datetime.UTC


def sentence(body: str) -> bytes:
    return b"$%s*%02X\r\n" % (body.encode(), nmea_checksum(body.encode()))


def unix_ms(*args: int) -> int:
    return int(datetime.datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def retime_file(src: Path, dst: Path, start_ms: int) -> Retimer:
    retimer = Retimer(start_ms)
    with open(src, "rb") as inp, open(dst, "wb") as out:
        for line in inp:
            out.write(retimer.line(line))
    return retimer


def fixes(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    """`tcu fixes --json PATH`, one dict per fix."""
    capsys.readouterr()
    assert main(["fixes", "--json", str(path)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def ms_of(iso: object) -> int:
    return int(datetime.datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.parametrize("name", ["ublox-8.log", "quectel-l76k-nmea.log", "ublox-zed-f9p-nmea.log"])
def test_a_retimed_trace_has_the_same_fixes_shifted_by_a_constant(
        name: str, traces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "retimed.log"
    start = unix_ms(2030, 6, 1, 12, 0, 0) + 437
    retimer = retime_file(traces / name, out, start)
    before, after = fixes(traces / name, capsys), fixes(out, capsys)
    assert len(after) == len(before) > 20
    shifts = {ms_of(a["time"]) - ms_of(b["time"]) for a, b in zip(after, before, strict=True)}
    assert len(shifts) == 1 and shifts.pop() % 1000 == 0  # one constant, the sub-second phase kept
    assert retimer.shift_ms is not None
    assert start - 1000 < ms_of(after[0]["time"]) <= start
    strip = lambda fix: {k: v for k, v in fix.items() if k != "time"}  # noqa: E731
    assert [strip(f) for f in after] == [strip(f) for f in before]
    # every sentence still passes its checksum; lines that are not sentences are unchanged
    framers = NmeaFramer(), NmeaFramer()
    valid = [framer.feed((traces / name).read_bytes() if i == 0 else out.read_bytes())
             for i, framer in enumerate(framers)]
    assert len(valid[0]) == len(valid[1]) and framers[0].counts == framers[1].counts
    old_lines, new_lines = (traces / name).read_bytes().splitlines(), out.read_bytes().splitlines()
    assert len(old_lines) == len(new_lines)
    assert [a for a in old_lines if b"$" not in a] == [b for b in new_lines if b"$" not in b]


def test_midnight_in_the_trace_and_a_date_rollover_in_the_target(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "midnight.log", tmp_path / "retimed.log"
    lines = []
    for hms, dmy, ymd in (("235958.00", "311225", "31,12,2025"), ("235959.00", "311225", "31,12,2025"),
                          ("000000.00", "010126", "01,01,2026"), ("000001.00", "010126", "01,01,2026")):
        lines.append(sentence("GPRMC,%s,A,4807.038,N,01131.000,E,022.4,084.4,%s,003.1,W" % (hms, dmy)))
        lines.append(sentence("GPGGA,%s,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,," % hms))
        lines.append(sentence("GPZDA,%s,%s,00,00" % (hms, ymd)))
    src.write_bytes(b"".join(lines))
    # 2027 is no leap year: two seconds after 23:59:59 on 28 February is 1 March
    retime_file(src, out, unix_ms(2027, 2, 28, 23, 59, 58) + 999)
    times = [f["time"] for f in fixes(out, capsys)]
    assert times == ["2027-02-28T23:59:58.000Z", "2027-02-28T23:59:59.000Z",
                     "2027-03-01T00:00:00.000Z", "2027-03-01T00:00:01.000Z"]
    text = out.read_bytes()
    assert b"GPZDA,235959.00,28,02,2027,00,00*" in text and b"GPZDA,000000.00,01,03,2027,00,00*" in text
    assert b",280227,003.1,W*" in text and b",010327,003.1,W*" in text


def test_a_trace_without_dates_gets_none_and_crosses_midnight_by_its_times() -> None:
    retimer = Retimer(unix_ms(2026, 3, 3, 23, 59, 59))
    out = [retimer.line(sentence("GPGGA,%s,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,," % hms))
           for hms in ("120000", "120001", "120002")]
    assert [line.split(b",")[1] for line in out] == [b"235959", b"000000", b"000001"]
    assert all(NmeaFramer().feed(line) for line in out)


def test_lines_without_a_valid_time_pass_through_unchanged() -> None:
    retimer = Retimer(unix_ms(2026, 3, 3, 10, 0, 0))
    untouched = [b"# a comment\n", b"$GPGSV,1,1,01,12,40,083,46*40\r\n", b"\xb5b\x01\x07binary\n",
                 sentence("GPRMC,,V,,,,,,,,,,N"), sentence("GPGGA,25xx00,,,,,0,00,,,M,,M,,"),
                 b"$GPRMC,120000.00,A,4807.038,N,01131.000,E,0,0,010126,,*00\r\n"]  # bad checksum
    assert [retimer.line(line) for line in untouched] == untouched
    assert retimer.shift_ms is None
    glued = b"\xb5b\x01" + sentence("GPRMC,120000.00,A,4807.038,N,01131.000,E,0,0,,,")
    new = retimer.line(glued)
    assert new.startswith(b"\xb5b\x01$GPRMC,100000.00,A,") and b",0,0,,,*" in new  # empty date stays empty
    assert NmeaFramer().feed(new)


def test_replay_serial_retime_drives_a_pty_at_the_current_time(traces: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "replay-serial", str(traces / "ublox-8.log"),
                             "--retime"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        path = proc.stderr.readline().split("writing to ")[1].split()[0]
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
        data = b""
        try:
            while data.count(b"RMC,") < 2:
                data += os.read(fd, 4096)
        finally:
            os.close(fd)
        now = time.time() * 1000
    finally:
        proc.terminate()
        proc.wait(10)
    rmc = [s for s in NmeaFramer().feed(data) if s[3:6] == "RMC"][1]
    fields = rmc.split(",")
    when = datetime.datetime.strptime(fields[9] + fields[1][:6], "%d%m%y%H%M%S").replace(tzinfo=UTC)
    assert abs(when.timestamp() * 1000 - now) < 3000


def test_a_gap_the_replay_does_not_sleep_on_starts_again_at_now(tmp_path: Path) -> None:
    trace = tmp_path / "gap.log"
    trace.write_bytes(b"".join(sentence("GPRMC,%s,A,4807.038,N,01131.000,E,0,0,010126,," % hms)
                               for hms in ("120000.00", "130000.00")))  # an hour apart: not slept on
    lines: list[bytes] = []
    began = time.time()
    assert replay_serial_cmd.play(str(trace), lines.append, 1.0, False, retime=True) > 0
    stamps = [datetime.datetime.strptime(line.split(b",")[9].decode() + line.split(b",")[1][:6].decode(),
                                         "%d%m%y%H%M%S").replace(tzinfo=UTC).timestamp() for line in lines]
    assert len(stamps) == 2 and all(began - 2 < t <= time.time() for t in stamps)


def test_retime_refuses_a_speed(traces: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tcu.tools.cli", "replay-serial", str(traces / "ublox-8.log"),
                             "--retime", "--speed", "2"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "drop --speed" in result.stderr and "Traceback" not in result.stderr


def test_a_link_that_cannot_be_made_is_one_line_and_exit_2(traces: Path, tmp_path: Path) -> None:
    for link in ("/nonexistent/dir/gps", str(tmp_path)):  # no such directory; a directory in the way
        result = subprocess.run([sys.executable, "-m", "tcu.tools.cli", "replay-serial", str(traces / "ublox-8.log"),
                                 "--link", link], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and "--link %s: cannot make the symlink" % link in result.stderr
        assert len(result.stderr.splitlines()) == 1 and tmp_path.is_dir()
    precious = tmp_path / "not-a-link"  # a real file in the way is refused, and left alone
    precious.write_text("keep\n")
    result = subprocess.run([sys.executable, "-m", "tcu.tools.cli", "replay-serial", str(traces / "ublox-8.log"),
                             "--link", str(precious)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "File exists" in result.stderr and precious.read_text() == "keep\n"
