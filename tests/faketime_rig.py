"""The parts of tests/test_run_clock_steps.py: `tcu run` as a real process whose wall clock
(CLOCK_REALTIME only) the test steps at will with Debian's libfaketime, a receiver on a pty
the test drives (a fix with a date, or searching), and a peer on the broker that decodes
every uplink as it arrives. The machine's own clock is never touched.

libfaketime (LD_PRELOAD) wraps clock_gettime/time/gettimeofday, so every time.time() of the
unit's process, in the emulator or a library, reads the stepped clock. FAKETIME_TIMESTAMP_FILE
holds a relative offset ("+86400") that the test rewrites; FAKETIME_NO_CACHE=1 is needed, as
libfaketime otherwise re-reads the file only every 10 s. FAKETIME_DONT_FAKE_MONOTONIC=1 keeps
CLOCK_MONOTONIC the machine's: the clock the unit's bounds must run on.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from helpers import PtyGps

from tcu.protocol import messages

LAT, LON = 48.1374300, 11.5754900
DAY_S = 86400
YEAR_S = 365 * DAY_S


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.skip("libfaketime is not installed (apt-get install faketime libfaketime)")
    return found[0]


class SteppedClock:
    """The unit's CLOCK_REALTIME: the machine's plus an offset the test sets at any moment."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "faketime-offset"
        self.offset_s = 0
        self.set(0)

    def set(self, offset_s: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("%+d\n" % offset_s)
        os.replace(tmp, self.path)  # never a half-written file for the reader
        self.offset_s = offset_s

    def to(self, unix_s: int) -> None:
        """Step the clock to unix_s (e.g. back to 1970)."""
        self.set(unix_s - int(time.time()))

    def now(self) -> float:
        """What the unit's time.time() reads now."""
        return time.time() + self.offset_s

    def env(self) -> dict[str, str]:
        return {**os.environ, "LD_PRELOAD": libfaketime(), "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


class Receiver(PtyGps):
    """The rig's receiver at LAT, LON: searching (no fix, no valid date) until `fix` is set."""

    def __init__(self) -> None:
        super().__init__(fix=False, lat=LAT, lon=LON)


class Peer:
    """The backend's side of one unit on the broker: each uplink decoded, with the (machine's
    monotonic) time it arrived; downlinks published at QoS 1."""

    def __init__(self, url: str, unit: str) -> None:
        self.unit = unit
        self.got: list[tuple[float, messages.Message]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="peer-%d" % time.monotonic_ns())
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
        self.client.subscribe("tcu/v1/%s/up/#" % unit, qos=1)
        self.client.loop_start()
        assert ready.wait(5)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            return
        msg = messages.decode(bytes(message.payload))
        with self._lock:
            self.got.append((time.monotonic(), msg))

    def messages(self, type_: int | None = None) -> list[tuple[float, messages.Message]]:
        with self._lock:
            return [(t, m) for t, m in self.got if type_ is None or m.type == type_]

    def publish(self, topic: str, data: bytes) -> None:
        self.client.publish(topic, data, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_unit(log: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "run", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
