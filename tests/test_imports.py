"""What `tcu run` loads: its resident size is a target (issue 7, bench/memory.py), so the
heavy packages it does not need stay out. Each check runs in a fresh interpreter, where
sys.modules shows exactly what the import pulled in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("amqtt", "asyncio", "cryptography")  # the embedded broker, its event loop, Ed25519/AES-GCM

RUN_PARSER = """
import json, sys
from tcu.tools.cli import build_parser
build_parser("run").parse_args(["run", "--tls-ca", "ca.pem"])  # what `tcu run` imports before it runs
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
""" % (HEAVY,)

HMAC_ONLY = """
import json, sys
from tcu.emulator.config import Config
from tcu.emulator.daemon import verifier_of
from tcu.protocol import commands as cmd, cose

key = bytes(range(100, 132))
verifier = verifier_of(Config(unit="u1", backend_hmac_key=sys.argv[1]))
command = cmd.Command("u1", 7, 0, 2000000000, cmd.CMD_TRACK_STOLEN, {1: "case-1", 2: 2000000000})
accepted = verifier.verify(cmd.seal_command(command, b"backend-mac", cose.ALG_HMAC_256_256, key), 1700000000, 0)
print(json.dumps({"counter": accepted.counter, "cryptography": "cryptography" in sys.modules}))
"""


def python(code: str, *argv: str) -> str:
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tcu_run_imports_no_broker_event_loop_or_cryptography() -> None:
    assert json.loads(python(RUN_PARSER)) == []


def test_hmac_only_command_verification_works_without_cryptography(tmp_path: Path) -> None:
    key_file = tmp_path / "backend.mac"
    key_file.write_text(bytes(range(100, 132)).hex())
    assert json.loads(python(HMAC_ONLY, str(key_file))) == {"counter": 7, "cryptography": False}



COMMAND_MODULES = """
import contextlib, io, json, sys
from tcu.tools.cli import build_parser
argv = sys.argv[1:]
try:
    with contextlib.redirect_stdout(io.StringIO()):
        build_parser(argv[0]).parse_args(argv)
except SystemExit:  # --help exits after printing
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith("tcu.tools") or m.split(".")[0] in
                        ("paho", "cbor2", "serial", "pynmea2", "rich", "cryptography", "tcu"))))
"""


def test_top_level_help_imports_no_command() -> None:
    """`tcu --help` lists every command from cli.SUMMARIES: none of their modules is loaded
    (it used to load all of them: 0.57 s and 40 MB, issue 18)."""
    loaded = json.loads(python(COMMAND_MODULES, "--help"))
    assert [m for m in loaded if m.startswith("tcu.tools")] == ["tcu.tools", "tcu.tools.cli"]
    assert not [m for m in loaded if not m.startswith("tcu")]


def test_trigger_and_status_load_only_the_standard_library_and_the_control_client() -> None:
    """Through argparse too (`--help`, an option the fast path leaves to it), no HAL, MQTT or CBOR;
    the fast path itself: tests/test_control_client.py."""
    for argv in (["trigger", "crash"], ["status", "--json"]):
        loaded = json.loads(python(COMMAND_MODULES, *argv))
        assert [m for m in loaded if m.startswith("tcu.tools")] == ["tcu.tools", "tcu.tools.cli",
                                                                     "tcu.tools.control_cmd",
                                                                     "tcu.tools.control_parser"], argv
        assert [m.split(".")[0] for m in loaded if not m.startswith("tcu")] == [], argv


def test_help_summaries_are_the_commands_own() -> None:
    """Each line of `tcu --help` is the help its command registers (so the two cannot drift)."""
    import argparse
    import importlib

    from tcu.tools import cli

    for name, module in cli.COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module("tcu.tools." + module).register(sub)
        helps = {action.dest: action.help for action in sub._choices_actions}
        assert helps[name] == cli.SUMMARIES[name], name
