"""Sources: trace files byte for byte minus comments, live serial ports, clear errors."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TRACES
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tcu.firmware.errors import SourceError
from tcu.firmware.fix import Fix
from tcu.hal import iter_fixes
from tcu.hal.framing import sniff
from tcu.hal.source_base import Source
from tcu.hal.sources import CHUNK, SerialSource, TraceFile, open_source
from tcu.tools import fixes_cmd

EXCERPT = Path(__file__).parent / "data" / "ublox-lea-4h-excerpt.log"


def read_all(source: Source) -> bytes:
    out = b""
    while chunk := source.read():
        out += chunk
    return out


def test_trace_file_drops_comment_lines_and_keeps_every_other_byte(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b"# header\r\n$GPA*00\r\n#\n\x00\xff# not a comment\n"
                     b"$GPB*00 # nor this\r# lines end at LF\n\r\n#last, no newline")
    with open_source(str(path)) as source:
        assert isinstance(source, TraceFile)
        assert read_all(source) == (b"$GPA*00\r\n\x00\xff# not a comment\n"
                                    b"$GPB*00 # nor this\r# lines end at LF\n\r\n")
        assert source.read() == b""


def test_trace_file_long_lines_are_split_but_not_mistaken_for_comments(tmp_path: Path) -> None:
    binary = b"\xb5b" + b"x" * (CHUNK - 2) + b"#" + b"y" * CHUNK + b"\n"
    comment = b"#" + b"c" * (3 * CHUNK) + b"\n"
    path = tmp_path / "t.log"
    path.write_bytes(binary + comment + b"$GPZ*00\n")
    with open_source(str(path)) as source:
        assert read_all(source) == binary + b"$GPZ*00\n"


def test_context_manager_closes(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b"$GPA*00\n")
    with open_source(str(path)) as source:
        pass
    with pytest.raises(SourceError):
        source.read()


def test_missing_file_names_it() -> None:
    with pytest.raises(SourceError, match="no-such-trace.log"):
        open_source("/nonexistent/no-such-trace.log")
    with pytest.raises(SourceError, match="no-such-trace.log"):
        iter_fixes("/nonexistent/no-such-trace.log")  # at the call, not at first next()


def test_missing_device_names_it() -> None:
    with pytest.raises(SourceError, match="/dev/ttyNOSUCH0"):
        open_source("/dev/ttyNOSUCH0", 4800)


def test_directory_is_not_a_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=str(tmp_path)):
        open_source(str(tmp_path))


def test_unreachable_url_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="socket://127.0.0.1:1"):
        open_source("socket://127.0.0.1:1")


def test_loop_url_reads_back_what_is_written() -> None:
    with open_source("loop://", 115200) as source:
        assert isinstance(source, SerialSource)
        source._port.write(b"$GPA*00\r\n")
        assert read_all(source) == b"$GPA*00\r\n"  # then the read timeout gives b""


def test_trace_fixes_through_iter_fixes() -> None:
    fixes = list(iter_fixes(str(EXCERPT)))
    assert [f.time_ms for f in fixes] == [1155179338000, 1155179339000, 1155179340000]


class Pty:
    """A real pseudo-terminal: the HAL opens the slave path as a serial device."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view[:1024]):]

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def receiver_bytes(path: Path) -> bytes:
    """What the receiver sent: the trace minus its comment lines."""
    with open_source(str(path)) as source:
        return read_all(source)


def take(path: str, count: int, feed: bytes, pty: Pty) -> list[Fix]:
    """Open ``path`` live, write ``feed`` to the pty in a thread, collect ``count`` fixes."""
    got: list[Fix] = []
    with iter_fixes(path, 9600) as fixes:
        assert fixes.is_live
        writer = threading.Thread(target=pty.write_all, args=(feed,), daemon=True)
        writer.start()
        # Watchdog: closing the port makes a stuck read raise instead of hanging the test.
        watchdog = threading.Timer(20, fixes.close)
        watchdog.start()
        try:
            for fix in fixes:
                got.append(fix)
                if len(got) == count:
                    break
        finally:
            watchdog.cancel()
            writer.join(5)
    return got


def test_real_pty_serial_gives_the_same_fixes_as_the_trace() -> None:
    expected = list(iter_fixes(str(EXCERPT)))
    pty = Pty()
    try:
        got = take(pty.path, len(expected), receiver_bytes(EXCERPT), pty)
    finally:
        pty.close()
    assert got == expected  # the last epoch comes out on the idle timeout


def test_real_pty_with_binary_frames_from_a_real_log() -> None:
    log = TRACES / "ac12_binary.log"  # Ashtech: NMEA with binary $PASHR,MCA frames
    expected = list(iter_fixes(str(log)))
    assert len(expected) >= 4
    pty = Pty()
    try:
        got = take(pty.path, len(expected), receiver_bytes(log), pty)
    finally:
        pty.close()
    assert got == expected


def test_unplugged_device_raises_source_error() -> None:
    pty = Pty()
    try:
        with open_source(pty.path, 9600) as source:
            os.write(pty.master, b"$GPA*00\r\n")
            assert source.read().startswith(b"$")
            os.close(pty.master)  # the receiver goes away
            with pytest.raises(SourceError, match=pty.path):
                while True:
                    source.read()
    finally:
        pty.close()


def fixes_cli(*argv: str) -> int:
    """`tcu fixes` through its own register()/run(), without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="tcu")
    fixes_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fixes", *argv])
    return int(args.run(args))


def test_fixes_command_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert fixes_cli(str(EXCERPT), "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    # recorded 2006-08-10: more than 1024 weeks before the known-good epoch, so (issue 13) read as
    # a GPS week rollover and moved forward 1024 weeks, which `tcu fixes` says on stderr
    assert json.loads(lines[0]) == {"time": "2026-03-26T03:08:58.000Z", "lat": 49.1308885,
                                    "lon": -122.7199572, "alt": 516.7, "speed": 0.54,
                                    "course": 323.14, "mode": 3}
    assert len(lines) == 3


def test_fixes_command_text_and_unknown_values(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = tmp_path / "rmc.log"
    trace.write_bytes(b"$GPRMC,123519,A,4807.038,N,01131.000,E,,,230394,003.1,W*66\r\n")
    assert fixes_cli(str(trace)) == 0
    out = capsys.readouterr()
    assert out.out == "2013-11-06T12:35:19.000Z  2D  48.1173000 11.5166667\n"  # 1994 + 1024 weeks (rollover)
    assert "1 fixes moved forward 1024 weeks" in out.err
    assert fixes_cli(str(trace), "--json") == 0
    line = json.loads(capsys.readouterr().out)
    assert line["alt"] is None and line["speed"] is None and line["mode"] == 2


def test_fixes_command_lets_source_errors_propagate() -> None:
    with pytest.raises(SourceError, match="missing.log"):
        fixes_cli("/nonexistent/missing.log", "--baud", "4800")


def test_socket_url_streams_every_fix_then_reports_the_disconnect(traces: Path) -> None:
    """A receiver behind `socket://` (ser2net, a phone app): every epoch sent before the peer
    hangs up is a fix, the last one included; the hang-up is a clear error, not a traceback."""
    data = (traces / "ublox-8.log").read_bytes()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def serve() -> None:
            conn, _ = server.accept()
            # pyserial's socket:// open() discards whatever arrived before it returns
            # (reset_input_buffer): a receiver streams on, a one-shot test must wait.
            time.sleep(0.5)
            conn.sendall(data)
            conn.close()

        threading.Thread(target=serve, daemon=True).start()
        url = "socket://127.0.0.1:%d" % server.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "tcu.tools.cli", "fixes", url, "--json"],
                                capture_output=True, text=True, timeout=30)
    expected = list(iter_fixes(str(traces / "ublox-8.log")))
    assert len(result.stdout.splitlines()) == len(expected) == 72
    assert result.returncode == 2 and "disconnected" in result.stderr and "Traceback" not in result.stderr


@given(data=st.lists(st.one_of(st.sampled_from([b"#", b"# c", b"$GPA*00", b"\r", b"x#y", b"\x00\xff", b"##"]),
                               st.binary(max_size=12)), max_size=25).map(b"\n".join),
       chunk=st.sampled_from([1, 2, 3, 7, 64]))
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_trace_file_drops_exactly_the_comment_lines_whatever_the_block_size(
        data: bytes, chunk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tcu.hal.trace.CHUNK", chunk)
    assume(sniff(data) == "nmea")  # a foreign framing is unwrapped first (tests/test_foreign_logs.py)
    path = tmp_path / "t.log"
    path.write_bytes(data)
    lines = re.split(b"(?<=\n)", data)  # lines end at LF only
    with TraceFile(str(path)) as source:
        comment = re.compile(rb"#[\t\r\x20-\x7e\x80-\xff]*\n?")  # a text line: not a binary frame's bytes
        assert read_all(source) == b"".join(line for line in lines if not comment.fullmatch(line))
