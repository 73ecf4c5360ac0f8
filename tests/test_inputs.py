"""Trigger inputs (emulator/inputs.py): a real named pipe, file, pty and gpiozero's MockFactory pins,
each feeding a recorder of the requests it delivers; and a fifo driving a real UnitDaemon."""

from __future__ import annotations

import os
import select
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from tcu.emulator.inputs import Lines, PtyInput, open_inputs, parse_command
from tcu.firmware.errors import UsageError


class Recorder:
    """The interface boundary: records each request; refuses cancelling a crash, like the unit."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.requests.append(request)
        if request == {"op": "cancel", "kind": "crash"}:
            return {"ok": False, "error": "crash: the occupant cannot cancel this session"}
        return {"ok": True}

    def seen(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(r["op"], r["kind"]) for r in self.requests]


def input_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("tcu-input")]


def write_fifo(path: Path, text: str) -> None:
    """What `echo TEXT > PATH` does: open, write, close."""
    with open(path, "w") as fifo:
        fifo.write(text)


def test_commands_are_those_of_tcu_trigger() -> None:
    assert parse_command("crash") == {"op": "trigger", "kind": "crash"}
    assert parse_command("  trigger sos  # the button") == {"op": "trigger", "kind": "sos"}
    assert parse_command("clear theft") == {"op": "clear", "kind": "theft"}
    assert parse_command("cancel roadside") == {"op": "cancel", "kind": "roadside"}
    assert parse_command("# only a comment") is None and parse_command("   ") is None
    with pytest.raises(UsageError, match="unknown trigger 'airbag'"):
        parse_command("airbag")
    with pytest.raises(UsageError, match="expected KIND, trigger KIND"):
        parse_command("stop theft now")


def test_lines_split_on_any_line_end_and_drop_overlong_ones() -> None:
    lines = Lines()
    assert list(lines.feed(b"crash\r\nclear th")) == ["crash"]
    assert list(lines.feed(b"eft\rsos\n\n")) == ["clear theft", "sos"]
    assert list(lines.feed(b"x" * 5000)) == [] and list(lines.feed(b"x clear theft\ncrash\n")) == ["crash"]


def test_a_fifo_takes_repeated_echos_and_survives_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, recorder = tmp_path / "trigger.fifo", Recorder()
    group = open_inputs(["fifo:%s" % path], recorder)
    try:
        assert stat.S_ISFIFO(path.stat().st_mode) and path.stat().st_mode & 0o777 == 0o600
        write_fifo(path, "crash\n")
        assert wait_until(lambda: recorder.seen() == [("trigger", "crash")])
        write_fifo(path, "# a comment\n\nairbag\nstop it now\ncancel crash\n")
        write_fifo(path, "trigger theft\nclear theft\n")  # a writer after the last one closed: no EOF, no re-open
        assert wait_until(lambda: len(recorder.seen()) == 4)
        assert recorder.seen() == [("trigger", "crash"), ("cancel", "crash"), ("trigger", "theft"), ("clear", "theft")]
    finally:
        group.close()
    err = capsys.readouterr().err.splitlines()
    assert err == ["tcu input fifo:%s: error: unknown trigger 'airbag': expected one of " % path
                   + "assist, crash, roadside, sos, theft",
                   "tcu input fifo:%s: error: expected KIND, trigger KIND, clear KIND or cancel KIND, got 'stop it now'"
                   % path,
                   "tcu input fifo:%s: refused: cancel crash: crash: the occupant cannot cancel this session" % path]
    assert not path.exists() and input_threads() == []  # the pipe it made is gone, its thread joined


def test_an_existing_fifo_is_kept_and_a_regular_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "made-by-ci.fifo"
    os.mkfifo(path, 0o600)
    recorder = Recorder()
    with open_inputs(["fifo:%s" % path], recorder):
        write_fifo(path, "sos\n")
        assert wait_until(lambda: recorder.seen() == [("trigger", "sos")])
    assert stat.S_ISFIFO(path.stat().st_mode)  # not ours to remove
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(UsageError, match="is not a named pipe \\(file:PATH follows a regular file\\)"):
        open_inputs(["fifo:%s" % plain], recorder)


def test_a_file_is_followed_from_its_end_through_truncation_and_rotation(tmp_path: Path) -> None:
    path, recorder = tmp_path / "triggers.txt", Recorder()
    path.write_text("crash\n")  # history: not replayed
    with open_inputs(["file:%s" % path], recorder):
        with open(path, "a") as log:
            log.write("clear ")
            log.flush()
            time.sleep(0.3)  # a half-written line across a poll stays pending
            log.write("theft\n")
        assert wait_until(lambda: recorder.seen() == [("clear", "theft")])
        path.write_text("sos\n")  # truncated and rewritten
        assert wait_until(lambda: recorder.seen()[1:] == [("trigger", "sos")])
        path.rename(tmp_path / "triggers.txt.1")
        with open(tmp_path / "triggers.txt.1", "a") as old:
            old.write("roadside\n")  # still read: the rest of the rotated file
        assert wait_until(lambda: recorder.seen()[2:] == [("trigger", "roadside")])
        path.write_text("assist\n")  # the new file, from its start
        assert wait_until(lambda: recorder.seen()[3:] == [("trigger", "assist")])
    assert input_threads() == []


def test_a_file_that_does_not_exist_yet_is_waited_for(tmp_path: Path) -> None:
    path, recorder = tmp_path / "later.txt", Recorder()
    with open_inputs(["file:%s" % path], recorder):
        path.write_text("theft\n")
        assert wait_until(lambda: recorder.seen() == [("trigger", "theft")])


def read_answer(fd: int, timeout: float = 5.0) -> str:
    data = b""
    while not data.endswith(b"\r\n"):
        assert select.select([fd], [], [], timeout)[0], "no answer on the pty"
        data += os.read(fd, 1024)
    return data.decode()


def test_a_pty_answers_like_a_serial_console(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    link, recorder, closed = tmp_path / "console", Recorder(), threading.Event()

    def deliver(request: dict[str, Any]) -> dict[str, Any]:
        if request["kind"] == "sos":  # answered only once its writer has gone (else it is a race)
            closed.wait(5)
        return recorder(request)

    with open_inputs(["pty:%s" % link], deliver) as group:
        pty = group.inputs[0]
        assert isinstance(pty, PtyInput)
        target = os.readlink(link)
        assert target.startswith("/dev/pts/") and os.stat(target).st_mode & 0o777 == 0o600
        console = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(console, b"crash\r")  # Enter on a terminal sends CR
            assert read_answer(console) == "ok\r\n"
            os.write(console, b"cancel crash\n")
            assert read_answer(console) == "refused: cancel crash: crash: the occupant cannot cancel this session\r\n"
            os.write(console, b"# nothing\nairbag\n")
            assert read_answer(console).startswith("error: unknown trigger 'airbag'")
        finally:
            os.close(console)
        script = os.open(link, os.O_WRONLY | os.O_NOCTTY)  # `echo ... > PATH`: writes, closes, never reads...
        os.write(script, b"airbag\nsos\n")
        os.close(script)
        closed.set()
        assert wait_until(lambda: pty.dropped == 2)
        console = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            assert not select.select([console], [], [], 0.2)[0]  # ...and leaves no answer for the next reader
            os.write(console, b"clear theft\n")
            assert read_answer(console) == "ok\r\n"
        finally:
            os.close(console)
    assert recorder.seen() == [("trigger", "crash"), ("cancel", "crash"), ("trigger", "sos"), ("clear", "theft")]
    assert "refused: cancel crash" in capsys.readouterr().err  # also logged
    assert not os.path.lexists(link) and input_threads() == []


def test_a_pty_does_not_replace_a_real_file(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.write_text("mine")
    with pytest.raises(UsageError, match="exists and is not a symlink"):
        open_inputs(["pty:%s" % keep], Recorder())
    assert keep.read_text() == "mine"


@pytest.fixture
def mock_pins() -> Iterator[Any]:
    """gpiozero's own test path: MockFactory pins driven high and low."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    previous, Device.pin_factory = Device.pin_factory, MockFactory()
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = previous


def test_a_gpio_button_triggers_and_a_theft_line_clears_on_release(mock_pins: Any) -> None:
    recorder = Recorder()
    with open_inputs(["gpio:17=sos", "gpio:27=theft"], recorder):
        sos, theft = mock_pins.pin(17), mock_pins.pin(27)
        sos.drive_low()  # pressed: the button pulls the pin to ground
        assert wait_until(lambda: recorder.seen() == [("trigger", "sos")])
        sos.drive_high()
        theft.drive_low()
        assert wait_until(lambda: recorder.seen()[1:] == [("trigger", "theft")])
        theft.drive_high()  # WHILE_HELD: released is cleared
        assert wait_until(lambda: recorder.seen()[2:] == [("clear", "theft")])
    assert recorder.seen() == [("trigger", "sos"), ("trigger", "theft"), ("clear", "theft")]  # sos release: nothing


def test_a_long_press_cancels(mock_pins: Any) -> None:
    recorder = Recorder()
    with open_inputs(["gpio:17=sos,cancel-hold=0.2"], recorder):
        mock_pins.pin(17).drive_low()
        assert wait_until(lambda: recorder.seen() == [("trigger", "sos"), ("cancel", "sos")])
        mock_pins.pin(17).drive_high()
    with pytest.raises(UsageError, match="in use"):  # a pin two inputs claim
        open_inputs(["gpio:22=sos", "gpio:22=assist"], recorder)


def test_gpio_without_gpiozero_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # what an install without it looks like to import
    with pytest.raises(UsageError, match="needs gpiozero: pip install gpiozero"):
        open_inputs(["gpio:17=sos"], Recorder())


@pytest.mark.parametrize("spec, message", [
    ("serial:/dev/ttyS0", "expected fifo:PATH, file:PATH, pty:PATH or gpio:PIN=KIND"),
    ("fifo:", "expected fifo:PATH"),
    ("gpio:17", "expected gpio:PIN=KIND"),
    ("gpio:x=sos", "expected gpio:PIN=KIND"),
    ("gpio:17=airbag", "KIND one of assist, crash"),
    ("gpio:17=sos,hold=3", "the option is cancel-hold=SECONDS"),
    ("gpio:17=sos,cancel-hold=0", "the option is cancel-hold=SECONDS"),
    ("gpio:17=crash,cancel-hold=3", "cannot cancel a crash session"),
    ("file:/nonexistent-dir/x", "does not exist"),
])
def test_bad_specs_name_the_spec_and_the_accepted_forms(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as err:
        open_inputs([spec], Recorder())
    assert spec in str(err.value)


def test_a_bad_spec_leaves_none_of_the_others_open(tmp_path: Path) -> None:
    fifo = tmp_path / "t.fifo"
    with pytest.raises(UsageError):
        open_inputs(["fifo:%s" % fifo, "pty:%s" % (tmp_path / "c"), "bogus"], Recorder())
    assert not fifo.exists() and not os.path.lexists(tmp_path / "c") and input_threads() == []


def test_a_fifo_drives_a_real_unit(mosquitto: Any, traces: Path, tmp_path: Path) -> None:
    from tcu.emulator.daemon import UnitDaemon

    daemon = UnitDaemon(mosquitto.url, "unit-inputs-1", str(tmp_path / "state"), str(traces / "ublox-8.log"),
                        control=str(tmp_path / "control.sock"))
    fifo = tmp_path / "trigger.fifo"
    try:
        with open_inputs(["fifo:%s" % fifo], daemon.request):
            assert daemon.status()["state"] == "dormant"
            write_fifo(fifo, "crash\n")
            assert wait_until(lambda: daemon.status()["state"] == "active")
            assert [s["purpose"] for s in daemon.status()["sessions"]] == ["crash_notification"]
    finally:
        daemon.close()
