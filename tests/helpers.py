"""Small helpers the test modules (and bench/, through tests/gpsd_harness.py) share: a free
loopback port, the `tcu` CLI as a subprocess, waiting on a condition, stopping a process by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import reduce
from typing import Any

TCU = [sys.executable, "-m", "tcu.tools.cli"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tcu(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`tcu ARGS...` to its end, output captured (timeout: a bound for a loaded machine)."""
    return subprocess.run([*TCU, *args], capture_output=True, text=True, timeout=timeout)


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, poll_s: float = 0.1) -> bool:
    """True once condition() is truthy, False if it still is not at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return bool(condition())  # a last look: a loaded machine may have slept past the deadline


def stop(proc: subprocess.Popen[Any], timeout_s: float = 15) -> int:
    """SIGTERM by PID, then SIGKILL if it does not go; its exit status."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(5)


def nmea(body: str) -> bytes:
    """One NMEA sentence with its checksum and CRLF."""
    return ("$%s*%02X\r\n" % (body, reduce(lambda a, c: a ^ ord(c), body, 0))).encode()


def angle(value: float, digits: int, hemis: str) -> str:
    """Degrees as NMEA's (d)ddmm.mmmmm,H."""
    degrees = int(abs(value))
    return "%0*d%08.5f,%s" % (digits, degrees, (abs(value) - degrees) * 60, hemis[0] if value >= 0 else hemis[1])
