"""Real gpsd under gpsfake on a log, with `tcu fixes gpsd://...` as a second client.

gpsfake (Debian's gpsd-clients) starts its own gpsd on a loopback port and, in pipe mode
(``-p``), watches it itself and waits 1.4 s before it feeds the log, so a client that connects
in that window sees every report from the first sentence on: the TPVs gpsfake prints are gpsd's
own reference, and `tcu fixes gpsd://127.0.0.1:PORT --json --no-reconnect` (which ends when
gpsd reports the log's device gone) reads the same gpsd at the same time. Used by
tests/test_gpsd_source.py (a few logs) and bench/gpsd_conformance.py --gpsd (every log).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import free_port

WRITE_PAD_S = "0.002"  # gpsfake's per-sentence delay (0 on Linux by default: gpsd then drops lines)


def have_gpsfake() -> bool:
    return shutil.which("gpsfake") is not None and (shutil.which("gpsd") is not None
                                                     or os.path.exists("/usr/sbin/gpsd"))


@dataclass
class Run:
    gpsd_tpvs: list[dict[str, Any]] = field(default_factory=list)  # every TPV gpsfake's own client saw
    tcu_fixes: list[dict[str, Any]] = field(default_factory=list)
    tcu_summary: dict[str, Any] = field(default_factory=dict)
    tcu_stderr: str = ""


def gpsd_fixes(tpvs: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """gpsd's fixes as the HAL defines one: the last TPV of each time with mode >= 2 and a
    position, by time: (lat_e7, lon_e7, mode)."""
    out: dict[str, tuple[int, int, int]] = {}
    for tpv in tpvs:
        if tpv.get("mode", 0) >= 2 and "time" in tpv and "lat" in tpv and "lon" in tpv:
            out[tpv["time"]] = (round(tpv["lat"] * 1e7), round(tpv["lon"] * 1e7), tpv["mode"])
    return out


class GpsFake:
    """gpsfake -1 -p on a log, on a free loopback port, in its own session (stopped by its PID
    with the gpsd it started); ``reports()`` is what its own client printed."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self._out = tempfile.TemporaryFile()  # not a pipe: gpsfake must never block on its output
        self.proc = subprocess.Popen(["gpsfake", "-1", "-p", "-q", "-P", str(self.port), str(log)],
                                     stdout=self._out, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, WRITE_PAD=WRITE_PAD_S), start_new_session=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # gpsd listens within ~0.1 s; the feed starts at 1.4 s
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return "gpsd://127.0.0.1:%d" % self.port

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tpvs(self) -> list[dict[str, Any]]:
        self._out.seek(0)
        out = []
        for line in self._out.read().splitlines():
            if line.startswith(b'{"class":"TPV"'):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        self._out.close()
        return out

    def __enter__(self) -> GpsFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# `tcu fixes` started before gpsfake, its imports done, connecting the moment gpsd listens: on
# a loaded machine starting Python takes longer than gpsfake's 1.4 s before the feed.
_WAIT_THEN_RUN = """
import socket, sys, time
from tcu.tools.cli import main
import tcu.hal.gpsd, tcu.tools.fixes_cmd
port = int(sys.argv[1])
open(sys.argv[2], "w").close()  # imported: gpsfake may start
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.005)
sys.exit(main(["fixes", "gpsd://127.0.0.1:%d" % port, "--json", "--no-reconnect"]))
"""


def run_log(log: Path, timeout_s: float = 120) -> Run:
    """gpsfake on ``log`` with `tcu fixes gpsd://` watching; both stopped by PID at the end."""
    port = free_port()
    ready = Path(tempfile.mkdtemp()) / "ready"
    tcu = subprocess.Popen([sys.executable, "-c", _WAIT_THEN_RUN, str(port), str(ready)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline and tcu.poll() is None:
        time.sleep(0.02)
    ready.unlink(missing_ok=True)
    ready.parent.rmdir()
    fake = GpsFake(log, port)
    try:
        out, err = tcu.communicate(timeout=timeout_s)
        run = Run(tcu_stderr=err)
        run.tcu_fixes = [json.loads(line) for line in out.splitlines() if line.strip()]
        for line in err.splitlines():
            if line.startswith('{"summary"'):
                run.tcu_summary = json.loads(line)["summary"]
    finally:
        if tcu.poll() is None:
            tcu.kill()
            tcu.wait()
        fake.stop()
    run.gpsd_tpvs = fake.tpvs()
    return run
