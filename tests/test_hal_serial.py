"""Live serial on real ptys: unplug and replug, baud detection, pacing, replay-serial, record,
doctor."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tcu.firmware.errors import SourceError
from tcu.firmware.fix import Fix
from tcu.hal import iter_fixes
from tcu.hal.pacer import PacedTrace
from tcu.hal.serial_port import ReconnectingSource, SerialSource, detect_baud
from tcu.hal.sources import open_source
from tcu.tools import doctor_cmd, record_cmd, replay_serial_cmd

EXCERPT = Path(__file__).parent / "data" / "ublox-lea-4h-excerpt.log"


class Pty:
    """A real pseudo-terminal; the HAL opens the slave path as a serial device."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self.closed = False

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view[:1024]):]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for fd in (self.master, self.slave):
                os.close(fd)


def receiver_bytes(path: Path) -> bytes:
    with open_source(str(path)) as source:
        out = b""
        while chunk := source.read():
            out += chunk
        return out


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def repoint(link: Path, target: str) -> None:
    """Atomically make ``link`` name ``target`` (a udev rule does this on replug)."""
    tmp = link.with_suffix(".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def test_unplug_and_replug_mid_trace_resumes_within_2_s(tmp_path: Path, traces: Path) -> None:
    trace = traces / "ublox-8.log"
    expected = list(iter_fixes(str(trace)))
    data = receiver_bytes(trace)
    cut = data.index(b"$GNRMC", len(data) // 2)  # unplug between two epochs
    link = tmp_path / "ttyGPS"
    pty1 = Pty()
    repoint(link, pty1.path)
    events: list[tuple[float, str]] = []
    reconnected = threading.Event()
    disconnected = threading.Event()

    def on_event(text: str) -> None:
        events.append((time.monotonic(), text))
        (reconnected if text.startswith("reconnected") else disconnected).set()

    got: list[Fix] = []
    stream = iter_fixes(str(link), 9600, reconnect=True)
    assert isinstance(stream.source, ReconnectingSource)
    stream.source.retry_s = 0.1
    stream.source.on_event = on_event

    def consume() -> None:
        for fix in stream:
            got.append(fix)
            if len(got) == len(expected):
                return

    consumer = threading.Thread(target=consume, daemon=True)
    watchdog = threading.Timer(30, stream.close)
    consumer.start()
    watchdog.start()
    pty2 = None
    try:
        pty1.write_all(data[:cut])
        n_before = len(list(iter_fixes_bytes(data[:cut], tmp_path)))
        wait_until(lambda: len(got) >= n_before)  # the last epoch comes on the idle timeout
        pty1.close()  # unplugged
        assert disconnected.wait(5)
        pty2 = Pty()
        replugged = time.monotonic()
        repoint(link, pty2.path)
        assert reconnected.wait(5)
        resumed = events[-1][0]
        pty2.write_all(data[cut:])
        consumer.join(20)
    finally:
        watchdog.cancel()
        stream.close()
        pty1.close()
        if pty2 is not None:
            pty2.close()
    assert resumed - replugged < 2.0
    assert stream.source.disconnects == 1 and stream.source.reconnects == 1
    assert got == expected


def iter_fixes_bytes(data: bytes, tmp_path: Path) -> list[Fix]:
    path = tmp_path / "part.log"
    path.write_bytes(data)
    return list(iter_fixes(str(path)))


class Receiver:
    """A thread that keeps writing a trace's bytes into a pty, like a receiver at 1 Hz."""

    def __init__(self, data: bytes) -> None:
        self.pty = Pty()
        os.set_blocking(self.pty.master, False)  # a full pty buffer must not block close()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(data,), daemon=True)
        self.thread.start()

    def _run(self, data: bytes) -> None:
        view = memoryview(data)
        while not self.stop.is_set():
            try:
                view = view[os.write(self.pty.master, view[:1024]):] or memoryview(data)
            except BlockingIOError:  # nobody reads: the pty buffer is full
                self.stop.wait(0.02)
            except OSError:
                return  # the pty was closed

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.pty.close()


def test_baud_detection_picks_a_rate_with_valid_sentences() -> None:
    receiver = Receiver(receiver_bytes(EXCERPT))
    try:
        rate, early = detect_baud(receiver.pty.path, window_s=1.0)
        source = SerialSource(receiver.pty.path, None, detect_window_s=1.0)
        try:
            assert source.baudrate == 4800  # a pty accepts the first rate tried
            assert source.read().count(b"$GP") >= 2  # the detection bytes come first
        finally:
            source.close()
    finally:
        receiver.close()
    assert rate == 4800 and b"$GP" in early


def test_baud_detection_fails_clearly_on_garbage() -> None:
    receiver = Receiver(bytes(range(256)) * 4 + b"$GPGGA,no,checksum\r\n")
    try:
        with pytest.raises(SourceError, match="no checksum-valid NMEA .* 4800/9600/38400/115200"):
            detect_baud(receiver.pty.path, window_s=0.1)
    finally:
        receiver.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacer_keeps_the_trace_timing_times_speed() -> None:
    fake = FakeClock()
    with PacedTrace(str(EXCERPT), 2.0, clock=fake.clock, sleep=fake.sleep) as paced:
        out = b""
        while line := paced.read():
            out += line
    assert out == receiver_bytes(EXCERPT)  # every byte, unchanged
    # 03:08:07 (ZDA) .. 03:09:00: gaps of more than 5 s restart the schedule.
    assert paced.jumps == 1 and paced.backwards == 0
    assert sum(fake.sleeps) == pytest.approx((60 - 51) / 2)
    assert all(s > 0 for s in fake.sleeps)


def test_pacer_does_not_sleep_across_time_going_back_or_jumping(tmp_path: Path) -> None:
    from tcu.hal.framer import nmea_checksum

    def rmc(hhmmss: str) -> bytes:
        body = "GPRMC,%s,A,4807.038,N,01131.000,E,,,230394,," % hhmmss
        return ("$%s*%02X\r\n" % (body, nmea_checksum(body.encode()))).encode()

    path = tmp_path / "t.log"
    path.write_bytes(rmc("235959") + rmc("000000") + rmc("235958") + rmc("120000") + rmc("120001"))
    fake = FakeClock()
    with PacedTrace(str(path), 1.0, clock=fake.clock, sleep=fake.sleep) as paced:
        while paced.read():
            pass
    assert fake.sleeps == [1.0, 1.0]  # over midnight, then 12:00:00 -> 12:00:01
    assert paced.backwards == 1 and paced.jumps == 1


def cli(module: object, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tcu")
    module.register(parser.add_subparsers(dest="command", required=True))  # type: ignore[attr-defined]
    args = parser.parse_args(list(argv))
    return int(args.run(args))


def test_replay_serial_writes_the_trace_into_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    pty = Pty()
    received = bytearray()
    expected = receiver_bytes(EXCERPT)

    def read() -> None:
        while len(received) < len(expected):
            received.extend(os.read(pty.master, 4096))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert cli(replay_serial_cmd, "replay-serial", str(EXCERPT), pty.path, "--speed", "100") == 0
        reader.join(10)
    finally:
        pty.close()
    assert bytes(received) == expected
    assert "%d bytes written" % len(expected) in capsys.readouterr().err


def test_replay_serial_feeds_a_unit_through_its_own_pty(tmp_path: Path) -> None:
    link = tmp_path / "ttyGPS"
    proc = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "replay-serial", str(EXCERPT),
                             "--link", str(link), "--speed", "20", "--loop"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("tcu replay-serial: writing to /dev/pts/") and link.is_symlink()
        got: list[Fix] = []
        with iter_fixes(str(link), 9600) as fixes:
            watchdog = threading.Timer(20, fixes.close)
            watchdog.start()
            for fix in fixes:
                got.append(fix)
                if len({f.time_ms for f in got}) == 3:
                    break
            watchdog.cancel()
    finally:
        proc.terminate()
        proc.wait(10)
    expected = {(f.time_ms, f.lat_e7, f.lon_e7) for f in iter_fixes(str(EXCERPT))}
    assert {(f.time_ms, f.lat_e7, f.lon_e7) for f in got} <= expected
    assert not link.exists()  # the link is removed on exit


def test_record_a_live_receiver_into_a_replayable_trace(tmp_path: Path) -> None:
    pty = Pty()
    out = tmp_path / "rec.log"
    try:
        with open_source(pty.path, 9600) as source, open(out, "wb") as file:
            file.write(record_cmd.header(pty.path, source, record_cmd.datetime.datetime(2026, 1, 2)))
            writer = threading.Thread(target=pty.write_all, args=(receiver_bytes(EXCERPT),))
            writer.start()
            stats = record_cmd.record(source, file, 0.5)
            writer.join(5)
    finally:
        pty.close()
    text = out.read_bytes()
    assert text.startswith(b"# Recorded by tcu record from %s at 9600 baud, started 2026-01-02T00:00:00Z\n"
                           % pty.path.encode())
    assert stats.bytes == len(receiver_bytes(EXCERPT)) and stats.framer.rejected == 0
    assert list(iter_fixes(str(out))) == list(iter_fixes(str(EXCERPT)))


def test_record_command_from_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "copy.log"
    assert cli(record_cmd, "record", str(EXCERPT), "-o", str(out)) == 0
    assert out.read_bytes().startswith(b"# Recorded by tcu record from ")
    assert list(iter_fixes(str(out))) == list(iter_fixes(str(EXCERPT)))
    assert "valid sentences, 0 rejected" in capsys.readouterr().err


def test_doctor_finds_the_receiver_and_reports_silence(capsys: pytest.CaptureFixture[str]) -> None:
    receiver = Receiver(receiver_bytes(EXCERPT))
    silent = Pty()
    try:
        report = doctor_cmd.probe_port(receiver.pty.path, 0.5)
        assert cli(doctor_cmd, "doctor", silent.path, "--window", "0.05") == 1
        assert "no NMEA" in capsys.readouterr().out
        assert cli(doctor_cmd, "doctor", receiver.pty.path, silent.path, "--window", "0.1", "--json") == 0
    finally:
        receiver.close()
        silent.close()
    assert report == {"port": receiver.pty.path, "nmea": True, "baud": 4800, "talkers": ["GP"], "fix": True}
    lines = capsys.readouterr().out.splitlines()
    assert '"nmea": true' in lines[0] and '"nmea": false' in lines[1]
