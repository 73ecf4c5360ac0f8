"""Brokers for the conformance tests, each started on a free loopback port and stopped by
PID: Mosquitto with a given configuration, aedes (node, tests/aedes), amqtt (in process)."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import REPO, Mosquitto, free_port

AEDES_DIR = REPO / "tests" / "aedes"
USER, PASSWORD = "unit-auth", "p@ss:wörd/1"  # characters a URL must percent-encode

# name -> (extra mosquitto.conf lines, outcome): "ok" = every uplink delivered, else a text
# the one line of `tcu replay`'s error must contain.
MOSQUITTO = {
    "default": ("", "ok"),
    "max_inflight_1": ("max_inflight_messages 1\n", "ok"),
    "max_packet_size_80": ("max_packet_size 80\n", "announces Maximum Packet Size 80 bytes"),
    "message_size_limit_50": ("message_size_limit 50\n", "as too large (PUBACK 0x95)"),
    "max_qos_0": ("max_qos 0\n", "accepts QoS 0 only"),
    "retain_available_false": ("retain_available false\n", "ok"),
    "password_acl": ("", "ok"),
}


def auth_files(workdir: Path) -> str:
    """A Mosquitto password file for USER and an ACL confining it (and the test backend) to its
    own topics; the configuration lines that use them."""
    passwd, acl = workdir / "passwd", workdir / "acl"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), USER, PASSWORD], check=True,
                   capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "backend", "backend-pw"], check=True, capture_output=True)
    acl.write_text("user %s\ntopic readwrite tcu/v1/%s/#\n\nuser backend\ntopic read tcu/v1/+/up/#\n" % (USER, USER))
    os.chmod(passwd, 0o600)
    return "password_file %s\nacl_file %s\n" % (passwd, acl)


@contextmanager
def mosquitto(workdir: Path, extra: str, persistent: bool = False) -> Iterator[Mosquitto]:
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker = Mosquitto(workdir, persistent=persistent)
    text = broker.config.read_text() + extra
    if "password_file" in extra:
        text = text.replace("allow_anonymous true", "allow_anonymous false")
        text += "" if persistent else "user %s\n" % getpass.getuser()
    broker.config.write_text(text)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(signal.SIGKILL)


@contextmanager
def aedes() -> Iterator[str]:
    """aedes (npm, installed by scripts/test into tests/aedes/node_modules); its URL."""
    node = shutil.which("node")
    if node is None or not (AEDES_DIR / "node_modules" / "aedes").is_dir():
        if os.environ.get("CI"):
            pytest.fail("aedes is not installed: scripts/test must run npm install in tests/aedes")
        pytest.skip("aedes is not installed (cd tests/aedes && npm install)")
    port = free_port()
    proc = subprocess.Popen([node, str(AEDES_DIR / "broker.js"), str(port)], cwd=AEDES_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = proc.stderr.read() if proc.stderr else ""
                    raise RuntimeError("aedes did not start: %s" % why) from None
                time.sleep(0.05)
        yield "mqtt://127.0.0.1:%d" % port
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
