"""`tcu trigger`, `tcu status` and `tcu reload` against a real unit (UnitDaemon): what they print,
their exit status, and what their start imports (the spawn-time target, bench/spawn_time.py,
rests on it: README, "Spawn time")."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcu.emulator.daemon import UnitDaemon
from tcu.firmware.services import TRIGGERS_BY_NAME
from tcu.tools import cli, control_cmd

LAUNCHER = Path(__file__).resolve().parents[1] / "src" / "bin" / "tcu"  # what `pip install` puts on PATH
# What the hot path must not import: json (whose decoder imports re), re, enum (with functools,
# a third of the old start-up), argparse, socket.py (enum again), the service table, and the
# modules a bare interpreter does not load that it can do without (types, __future__).
HEAVY = {"json", "re", "enum", "functools", "argparse", "socket", "tcu.firmware.services", "types", "__future__"}


@pytest.fixture
def unit(mosquitto, traces, tmp_path: Path) -> Iterator[str]:
    control = str(tmp_path / "control.sock")
    daemon = UnitDaemon(mosquitto.url, "unit-cli-1", str(tmp_path / "state"), str(traces / "ublox-8.log"),
                        control=control)
    try:
        yield control
    finally:
        daemon.close()


def launch(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the installed launcher under -X importtime: the result (its own stderr lines) and
    every module its start imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", str(LAUNCHER), *argv],
                            capture_output=True, text=True, timeout=30)
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    own = "".join(line + "\n" for line in result.stderr.splitlines() if not line.startswith("import time:"))
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout, own), imported


def test_the_hot_path_imports_no_json_re_or_enum_and_says_the_same(unit: str) -> None:
    done, imported = launch("trigger", "crash", "--control", unit)
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "tcu trigger: trigger crash: done; privacy indicator ON\n", "")
    assert not imported & HEAVY, imported & HEAVY
    assert "tcu.firmware.errors" not in imported  # loaded on the way to a failure only
    latched, imported = launch("trigger", "clear", "crash", "--control", unit)
    assert latched.returncode == 0 and "session 1 (crash_notification) is latched" in latched.stdout
    assert not imported & HEAVY
    refused, imported = launch("trigger", "cancel", "crash", "--control", unit)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("tcu trigger: refused: ") and "occupant cannot cancel" in refused.stderr
    assert not imported & HEAVY
    human, imported = launch("status", "--control", unit)
    assert human.returncode == 0 and "privacy indicator: ON" in human.stdout and "crash_notification" in human.stdout
    assert not imported & HEAVY
    document, imported = launch("status", "--json", "--control", unit)
    assert json.loads(document.stdout)["sessions"][0]["purpose"] == "crash_notification"
    assert not imported & HEAVY
    reload, imported = launch("reload", "--control", unit)
    assert reload.returncode == 1 and "tcu reload: refused: this unit runs without a config file" in reload.stderr
    assert not imported & HEAVY


def test_errors_are_one_line_without_the_heavy_modules(tmp_path: Path) -> None:
    nobody = str(tmp_path / "none.sock")
    for argv, message in ((["status", "--control", nobody], "no unit is listening on %s" % nobody),
                          (["trigger", "crash", "--control", nobody], "no unit is listening"),
                          (["trigger", "crash", "--control", nobody, "--state", "x"], "not both"),
                          (["trigger", "sos", "--test", "cancel"], "expected `tcu trigger KIND`")):
        result, imported = launch(*argv)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, argv
        assert result.stderr.count("\n") == 1 and not imported & HEAVY, argv
    result, _ = launch("trigger", "CRASH", "--control", nobody)  # the service table's own message, then
    assert result.returncode == 2 and "trigger names are lower case" in result.stderr


def test_the_kinds_are_the_service_tables_local_triggers() -> None:
    assert list(control_cmd.KINDS) == sorted(TRIGGERS_BY_NAME)


@given(st.text(st.characters(blacklist_categories=["Cs"])))  # (a lone surrogate is no UTF-8)
def test_json_string_is_read_back_by_json(text: str) -> None:
    assert json.loads(control_cmd.json_string(text)) == text
    line = control_cmd.request_line({"op": text, "test": True, "json": False})
    assert json.loads(line.decode()) == {"op": text, "test": True, "json": False} and line.endswith(b"\n")


@contextlib.contextmanager
def older_unit(path: str, daemon_control: str, seen: list[str]) -> Iterator[None]:
    """A unit from before the text frames: JSON lines only, each passed to the real unit's
    JSON answer (so the answers are real); seen collects the ops it was asked."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(4)

    def loop() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn, conn.makefile("rwb") as lines:
                    for line in lines:
                        request: dict[str, Any] = {k: v for k, v in json.loads(line).items() if k != "format"}
                        seen.append(request["op"])
                        lines.write(control_json_ask(daemon_control, request))
                        lines.flush()

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield
    finally:
        server.close()


def control_json_ask(control: str, request: dict[str, Any]) -> bytes:
    from tcu.tools.control_json import ask

    return json.dumps(ask(control, request)).encode() + b"\n"


def test_an_older_unit_answering_json_gets_the_same_lines(
        unit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, seen = str(tmp_path / "old.sock"), []
    with older_unit(old, unit, seen):
        for argv in (["trigger", "crash"], ["trigger", "clear", "crash"], ["trigger", "cancel", "crash"]):
            said = []
            for control in (unit, old):
                code = cli.main([*argv, "--control", control])
                said.append((code, *capsys.readouterr()))
            assert said[0] == said[1], argv
        assert seen == ["trigger", "clear", "status", "cancel"]  # each request sent once
        assert cli.main(["status", "--json", "--control", old]) == 0
        assert json.loads(capsys.readouterr().out)["sessions"][0]["trigger"] == "crash"
