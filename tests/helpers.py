"""Small helpers the test modules (and bench/, through tests/gpsd_harness.py) share: a free
loopback port, the `tcu` CLI as a subprocess, waiting on a condition, stopping a process by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
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


class PtyGps:
    """A 1 Hz receiver on a pty at the true UTC time, each second on the second: RMC and GGA
    with a fix (and a date) while `fix` is set, else searching (a void RMC, GGA quality 0: no
    position, no valid date)."""

    def __init__(self, fix: bool = True, lat: float = 48.1374300, lon: float = 11.5754900) -> None:
        self.master, self._slave = os.openpty()
        self.path = os.ttyname(self._slave)
        self.fix = fix
        self._pos = "%s,%s" % (angle(lat, 2, "NS"), angle(lon, 3, "EW"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def epoch(self, now: datetime) -> bytes:
        hms, dmy = now.strftime("%H%M%S.00"), now.strftime("%d%m%y")
        if self.fix:
            return nmea("GPRMC,%s,A,%s,12.5,45.0,%s,,,A" % (hms, self._pos, dmy)) + \
                nmea("GPGGA,%s,%s,1,09,0.9,519.0,M,46.5,M,," % (hms, self._pos))
        return nmea("GPRMC,%s,V,,,,,,,%s,,,N" % (hms, dmy)) + nmea("GPGGA,%s,,,,,0,00,99.99,,,,,," % hms)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                os.write(self.master, self.epoch(datetime.now(UTC)))
            except OSError:
                return
            self._stop.wait(1.0 - time.time() % 1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(3)
        os.close(self.master)
        os.close(self._slave)
