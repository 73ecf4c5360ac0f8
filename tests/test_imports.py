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

