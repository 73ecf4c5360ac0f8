"""Located uplinks per second from `tcu replay` (in process) to a local Mosquitto with the
durable outbox on, beside paho's raw QoS 1 publish rate measured in the same run.

The trace is synthetic (1 Hz RMC + GGA for --seconds) and crash, SOS and theft triggers are
held active end to end (crash and SOS re-armed as each bounded session ends), so most fixes
produce a located report. The replay's time includes reading and decoding the trace; the
"replay, no uplink" line shows that ceiling. The raw rate: one paho client (default
max_inflight 20, loop_start) publishing the same number of payloads of the same size at
QoS 1 and waiting for every PUBACK. Target: the outbox replay at >= 50% of the raw rate.

Usage: python bench/outbox_throughput.py [--seconds 7200] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import reduce

import paho.mqtt.client as mqtt

from tcu.emulator.replay import Replay, TriggerWindow
from tcu.firmware.services import CRASH, SOS, THEFT
from tcu.firmware.unit import Unit
from tcu.hal import iter_fixes
from tcu.tools.replay_cmd import replay_to_broker


def sentence(body: str) -> str:
    return "$%s*%02X\r\n" % (body, reduce(lambda a, c: a ^ ord(c), body, 0))


def write_trace(path: str, seconds: int) -> None:
    t0 = datetime(2026, 5, 14, 8, 0, 0, tzinfo=UTC)
    with open(path, "w", encoding="ascii") as out:
        for i in range(seconds):
            t = t0 + timedelta(seconds=i)
            lat_min = 8.2458 + i * 0.00011
            hms, dmy = t.strftime("%H%M%S.00"), t.strftime("%d%m%y")
            lat, lon = "48%08.5f" % lat_min, "011%08.5f" % (34.5294 + i * 0.00007)
            out.write(sentence("GNRMC,%s,A,%s,N,%s,E,27.000,12.5,%s,,,A" % (hms, lat, lon, dmy)))
            out.write(sentence("GNGGA,%s,%s,N,%s,E,1,11,0.94,519.0,M,46.5,M,," % (hms, lat, lon)))


def windows(seconds: int) -> list[TriggerWindow]:
    """Crash (600 s bound) and SOS (900 s) re-armed back to back, theft throughout."""
    out = [TriggerWindow(THEFT, 0.0)]
    out += [TriggerWindow(CRASH, float(t), 1.0) for t in range(0, seconds, 601)]
    out += [TriggerWindow(SOS, float(t), 1.0) for t in range(0, seconds, 901)]
    return out


class Mosquitto:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-mosquitto-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = "mqtt://127.0.0.1:%d" % self.port
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as fh:
            fh.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                     % self.port)
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("mosquitto did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def raw_paho_rate(port: int, count: int, size: int) -> float:
    done = threading.Event()
    acked = [0]

    def on_publish(*args: object) -> None:
        acked[0] += 1
        if acked[0] == count:
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw")
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = bytes(size)
    began = time.perf_counter()
    for _ in range(count):
        client.publish("bench/raw", payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - began
    client.disconnect()
    client.loop_stop()
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=int, default=7200, help="trace length (1 Hz fixes)")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each; the best is reported")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-outbox-")
    trace = os.path.join(workdir, "trace.log")
    write_trace(trace, args.seconds)
    wins = windows(args.seconds)
    began = time.perf_counter()
    stats = Replay(Unit(), wins, lambda action, now: None).run(iter_fixes(trace))
    ceiling = stats.located / (time.perf_counter() - began)
    broker = Mosquitto()
    try:
        size = 24
        best_replay = best_raw = 0.0
        for run in range(args.runs):
            outbox = os.path.join(workdir, "outbox-%d" % run)
            began = time.perf_counter()
            result = replay_to_broker(trace, wins, broker.url, "bench-unit", outbox=outbox)
            elapsed = time.perf_counter() - began
            located = result.replay.located
            best_replay = max(best_replay, located / elapsed)
            best_raw = max(best_raw, raw_paho_rate(broker.port, located, size))
            if os.path.getsize(outbox):
                raise SystemExit("the outbox is not empty after the replay")
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("trace: %d s at 1 Hz, %d located uplinks of %d (crash, SOS and theft active throughout)"
          % (args.seconds, located, result.replay.uplinks))
    print("replay, no uplink (HAL + unit only): %8.0f located/s" % ceiling)
    print("replay -> Mosquitto, durable outbox: %8.0f located/s (best of %d)" % (best_replay, args.runs))
    print("paho raw QoS 1, %d B, inflight 20:  %8.0f msg/s (best of %d)" % (size, best_raw, args.runs))
    print("ratio: %.0f%% of the raw rate (target >= 50%%)" % (100 * best_replay / best_raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
