"""Trigger latency of `tcu run`: `tcu trigger crash` -> the first located report stored by the
backend, less the wait for the GPS fix it reports; paho's publish -> receive on the same
broker as the baseline, all measured in the same run.

Setup (all real processes, started and stopped by PID here): a Mosquitto on a free loopback
port; a pty GPS written by this bench (RMC + GGA per epoch at --rate Hz, stamped with the
current UTC time, each epoch with its own latitude so a report names the epoch it came
from); `tcu run --config CFG` on that pty, CFG setting `[services.crash] max_samples = 1` so
each crash session ends with its first report; `tcu backend --json --store FILE`, whose
stdout line for an uplink is printed after its row is committed to SQLite, read here by a
thread that stamps each line as it arrives. A paho subscriber in this process also stamps
each uplink as the broker delivers it, which splits the time between the unit and the
backend.

Per trial (--trials, default 100), once the previous session has ended:
  t_call     just before spawning `tcu trigger crash` (the real CLI, a new process);
  t_return   when that process has exited (the session started before it answered);
  t_fix      just after the epoch whose fix the report carries was written into the pty;
  t_broker   when the in-bench subscriber got the report;
  t_stored   when the backend's line for the report was read.
  latency = t_stored - max(t_call, t_fix): the trigger's path when the fix is already there,
  the fix's path (GPS thread, unit, audit log, outbox, broker, backend, SQLite) when the
  trigger waited for it; the wait for the next fix (random phase against the trigger, plus
  any epoch the GPS reader spends switching from heartbeats to positions) is left out and
  shown on its own ("epochs after the trigger"). Target: p99 <= 20 ms.
Also reported: the CLI's own start-to-return time (t_return - t_call) and the unit side
(t_broker - max(t_call, t_fix)). Baseline: paho QoS 1 publish -> on_message between two
clients in this process through the same Mosquitto (--baseline messages, 5 ms apart, after 20
warm-up messages). --profile stamps the unit's stages (see PROFILE) to show where the time goes;
--read-timeout S is a what-if: the unit run with the HAL's serial read timeout set to S.

Usage: python bench/trigger_latency.py [--trials 100] [--rate 1]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from memory import TCU, Mosquitto, gps_alive, start_unit, stop, wait_for

from tcu.emulator.uplink import ALL_UPLINKS
from tcu.hal.framer import nmea_checksum
from tcu.protocol import messages

LAT, LON, STEP = 48.0, 11.5, 0.00001  # epoch k is at latitude LAT + k * STEP
TARGET_MS = 20.0
CONFIG = "[services.crash]\nmax_samples = 1\n"
WHAT_IF = ("import sys, tcu.hal.serial_port as s; s.READ_TIMEOUT_S = %r\n"
           "from tcu.tools.cli import main; sys.exit(main())")
# --profile: `tcu run` with its stages stamped (perf_counter is CLOCK_MONOTONIC, shared by all
# processes) into a file, one line per event; the code under test is not changed.
PROFILE = """
import os, sys, threading, time
import tcu.hal.serial_port as sp, tcu.emulator.live as live, tcu.emulator.mqtt_session as ms
from tcu.firmware.events import FixEvent
out = open(%r, "a", buffering=1)
lock = threading.Lock()
def note(*fields):
    with lock:
        out.write(" ".join(map(str, fields)) + "\\n")
def wrap_read(read):
    def timed(self):
        data = read(self)
        if data:
            note("read", time.perf_counter())
        return data
    return timed
sp.SerialSource.read = wrap_read(sp.SerialSource.read)
handle = live.LiveUnit.handle
def timed_handle(self, event):
    fix = isinstance(event, FixEvent)
    if fix:
        note("handle0", time.perf_counter())
    try:
        return handle(self, event)
    finally:
        if fix:
            note("handle1", time.perf_counter())
live.LiveUnit.handle = timed_handle
publish = ms.Session.publish
def timed_publish(self, topic, payload, retain=False):
    mid = publish(self, topic, payload, retain)
    if "/up/" in topic:
        note("publish", time.perf_counter())
    return mid
ms.Session.publish = timed_publish
def wrap_sync(name):
    real = getattr(os, name)
    def timed(fd):
        t0 = time.perf_counter()
        real(fd)
        note("sync", t0, time.perf_counter() - t0, threading.current_thread().name, name)
    setattr(os, name, timed)
wrap_sync("fsync"); wrap_sync("fdatasync")
from tcu.tools.cli import main
sys.exit(main())
"""


def nmea(body: str) -> bytes:
    return ("$%s*%02X\r\n" % (body, nmea_checksum(body.encode()))).encode()


def angle(value: float, digits: int, hemis: str) -> str:
    degrees = int(abs(value))
    return "%0*d%08.5f,%s" % (digits, degrees, (abs(value) - degrees) * 60, hemis[0] if value >= 0 else hemis[1])


class PtyGps:
    """A receiver on a pty: one epoch every 1/rate s on the clock's grid, at the current time;
    written[k] is when epoch k was in the pty (perf_counter, just after the write)."""

    def __init__(self, rate_hz: float) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.period = 1.0 / rate_hz
        self.written: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def epoch(self, k: int, when: datetime) -> bytes:
        hms, dmy = when.strftime("%H%M%S.") + "%02d" % (when.microsecond // 10000), when.strftime("%d%m%y")
        pos = "%s,%s" % (angle(LAT + k * STEP, 2, "NS"), angle(LON, 3, "EW"))
        return (nmea("GPRMC,%s,A,%s,12.5,45.0,%s,,,A" % (hms, pos, dmy))
                + nmea("GPGGA,%s,%s,1,09,0.9,519.0,M,46.5,M,," % (hms, pos)))

    def _run(self) -> None:
        k, due = 0, (int(time.time() / self.period) + 1) * self.period
        while not self._stop.wait(max(0.0, due - time.time())):
            data = self.epoch(k, datetime.fromtimestamp(due, UTC))
            try:
                os.write(self.master, data)
            except OSError:
                return
            self.written[k] = time.perf_counter()
            k, due = k + 1, due + self.period

    def close(self) -> None:
        self._stop.set()
        self._thread.join(3)
        os.close(self.master)
        os.close(self._slave)


def epoch_of(lat: float) -> int:
    return round((lat - LAT) / STEP)


class Backend:
    """`tcu backend --json --store FILE` in its own process; lines() gives (t_read, record)."""

    def __init__(self, url: str, store: str) -> None:
        self.proc = subprocess.Popen([*TCU, "backend", "--broker", url, "--json", "--store", store,
                                      "--client-id", "bench-backend-%d" % os.getpid()],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "subscribed" not in line:
            stop(self.proc)
            raise SystemExit("tcu backend: %s" % line.strip())
        self.records: queue.Queue[tuple[float, dict[str, object]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.records.put((time.perf_counter(), json.loads(line)))

    def next(self, timeout_s: float = 10.0) -> tuple[float, dict[str, object]]:
        try:
            return self.records.get(timeout=timeout_s)
        except queue.Empty:
            raise SystemExit("the backend stored nothing for %.0f s" % timeout_s) from None


class Tap:
    """A paho subscriber in this process: when the broker delivered each located report."""

    def __init__(self, port: int, topic: str) -> None:
        self.arrivals: queue.Queue[float] = queue.Queue()
        self.client = client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-tap")
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", port)
        client.subscribe(topic, qos=1)
        client.loop_start()
        if not subscribed.wait(5):
            raise SystemExit("the bench subscriber could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if messages.decode(bytes(message.payload)).type == messages.T_REPORT:
            self.arrivals.put(now)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def paho_baseline(port: int, count: int, warmup: int = 20) -> list[float]:
    """QoS 1 publish -> on_message latencies (ms) between two paho clients on the broker; the
    first `warmup` messages are left out (the first few wait ~40 ms for the connection to settle)."""
    count += warmup
    got: dict[int, float] = {}
    done = threading.Event()

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got[int(m.payload[:8].decode())] = time.perf_counter()
        if len(got) == count:
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-base-sub")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-base-pub")
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = on_message
    for client in (sub, pub):
        client.connect("127.0.0.1", port)
        client.loop_start()
    sub.subscribe("bench/latency", qos=1)
    subscribed.wait(5)
    sent = {}
    for i in range(count):
        sent[i] = time.perf_counter()
        pub.publish("bench/latency", b"%08d" % i + bytes(40), qos=1)
        time.sleep(0.005)
    done.wait(10)
    for client in (sub, pub):
        client.disconnect()
        client.loop_stop()
    return [(got[i] - sent[i]) * 1000 for i in sorted(got) if i >= warmup]


def trial(gps: PtyGps, backend: Backend, tap: Tap, control: str) -> dict[str, float]:
    """One crash trigger, to the session's end; times in ms."""
    while not tap.arrivals.empty():
        tap.arrivals.get_nowait()
    t_call = time.perf_counter()
    result = subprocess.run([*TCU, "trigger", "crash", "--control", control], capture_output=True, text=True)
    t_return = time.perf_counter()
    if result.returncode:
        raise SystemExit("tcu trigger crash: %s" % result.stderr.strip())
    report = None
    while True:
        t_read, record = backend.next()
        if record["type"] == "report" and report is None:
            report = t_read, record
            t_broker = tap.arrivals.get(timeout=10)
        if record["type"] == "session_end":
            break
    assert report is not None, "the session ended without a report"
    t_stored, record = report
    written = dict(gps.written)  # a copy: the writer thread adds to it
    t_fix = written[epoch_of(float(record["lat"]))]  # type: ignore[arg-type]
    start = max(t_call, t_fix)
    return {"latency": (t_stored - start) * 1000, "unit": (t_broker - start) * 1000, "t_fix": t_fix,
            "t_broker": t_broker, "t_stored": t_stored,
            "cli": (t_return - t_call) * 1000, "wait": (t_fix - t_call) * 1000,
            "epochs": sum(1 for t in written.values() if t_return < t <= t_fix)}


def stages(rows: list[dict[str, float]], path: str) -> list[tuple[str, list[float]]]:
    """Per trial, the unit's stamped stages after its fix was written (ms)."""
    events: list[list[str]] = []
    with open(path) as fh:
        events = [line.split() for line in fh]
    names = ("GPS thread read the epoch's bytes", "epoch complete: fix handed to the unit (handle starts)",
             "PUBLISH written to the broker socket", "handle returns (report staged, audit appended)",
             "bench subscriber got the report", "backend's line read (row committed)")
    table: dict[str, list[float]] = {name: [] for name in names}
    syncs: dict[str, list[float]] = {}
    for row in rows:
        t_fix = row["t_fix"]

        def first(kind: str, after: float) -> float:
            return min(float(e[1]) for e in events if e[0] == kind and float(e[1]) >= after)

        read = first("read", t_fix)
        h0 = first("handle0", t_fix)
        pub, h1 = first("publish", h0), first("handle1", h0)
        for name, t in zip(names, (read, h0, pub, h1, row["t_broker"], row["t_stored"]), strict=True):
            table[name].append((t - t_fix) * 1000)
        for e in events:
            if e[0] == "sync" and h0 <= float(e[1]) <= max(pub, h1):
                syncs.setdefault("  %s in thread %s (duration)" % (e[4], e[3]), []).append(float(e[2]) * 1000)
    return [*table.items(), *sorted(syncs.items())]


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return "%8.2f %8.2f %8.2f %8.2f" % (cut[49], cut[89], cut[98], ordered[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="crash triggers (default 100)")
    parser.add_argument("--rate", type=float, default=1.0, help="GPS epochs per second (default 1)")
    parser.add_argument("--baseline", type=int, default=1000, help="paho messages for the baseline (default 1000)")
    parser.add_argument("--profile", action="store_true",
                        help="stamp the unit's stages (GPS read, fix handled, fsyncs, PUBLISH sent) and print "
                             "where the time goes, from the fix written")
    parser.add_argument("--read-timeout", type=float, metavar="S",
                        help="what-if: run the unit with the HAL's serial read timeout (READ_TIMEOUT_S, the "
                             "silence that ends an epoch) set to S instead of its default")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-trigger-")
    config = os.path.join(workdir, "tcu.toml")
    with open(config, "w") as fh:
        fh.write(CONFIG)
    broker = Mosquitto(workdir)
    gps = PtyGps(args.rate)
    procs: list[subprocess.Popen[str]] = []
    tap = None
    try:
        backend = Backend(broker.url, os.path.join(workdir, "backend.sqlite"))
        procs.append(backend.proc)
        command = TCU if args.read_timeout is None else [sys.executable, "-c", WHAT_IF % args.read_timeout]
        events = os.path.join(workdir, "profile.txt")
        if args.profile:
            code = PROFILE % events
            if args.read_timeout is not None:
                code = "import tcu.hal.serial_port as s; s.READ_TIMEOUT_S = %r\n" % args.read_timeout + code
            command = [sys.executable, "-c", code]
        unit, control = start_unit(broker.url, gps.path, workdir, "--config", config, command=command)
        procs.append(unit)
        wait_for(lambda: gps_alive(control), 20, "the unit to get a GPS fix")
        tap = Tap(broker.port, ALL_UPLINKS)
        rows = [trial(gps, backend, tap, control) for _ in range(args.trials)]
        baseline = paho_baseline(broker.port, args.baseline)
        profile = stages(rows, events) if args.profile else []
    finally:
        if tap is not None:
            tap.close()
        for proc in reversed(procs):
            stop(proc)
        broker.stop()
        gps.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print("tcu run on a %g Hz pty GPS, Mosquitto, tcu backend --store (SQLite); %d crash triggers, "
          "max_samples = 1%s" % (args.rate, args.trials, "" if args.read_timeout is None else
                                 "; WHAT-IF: serial read timeout %g s" % args.read_timeout))
    print("%-44s %8s %8s %8s %8s" % ("ms", "p50", "p90", "p99", "max"))
    lines = (("trigger -> report stored, less the fix wait", [r["latency"] for r in rows]),
             ("  of which unit + broker (bench subscriber)", [r["unit"] for r in rows]),
             ("tcu trigger CLI, spawn -> exit", [r["cli"] for r in rows]),
             ("paho QoS 1 publish -> receive (baseline)", baseline))
    for name, values in lines:
        print("%-44s %s" % (name, percentiles(values)))
    epochs = [int(r["epochs"]) for r in rows]
    print("fix wait (not counted): p50 %.0f ms; epochs written after the trigger returned, up to the reported "
          "one: %s" % (statistics.median(r["wait"] for r in rows),
                       ", ".join("%d in %d trials" % (e, epochs.count(e)) for e in sorted(set(epochs)))))
    if profile:
        print("where the time goes, ms after the fix was written (p50 / p99 over the trials):")
        for name, values in profile:
            ordered = sorted(values)
            print("  %-60s %8.2f %8.2f" % (name, statistics.median(ordered),
                                          statistics.quantiles(ordered, n=100, method="inclusive")[98]))
    p99 = statistics.quantiles(sorted(r["latency"] for r in rows), n=100, method="inclusive")[98]
    base99 = statistics.quantiles(sorted(baseline), n=100, method="inclusive")[98]
    print("ratio: p99 %.2f ms = %.1fx paho's p99 (%.2f ms); target <= %.0f ms: %s"
          % (p99, p99 / base99, base99, TARGET_MS, "met" if p99 <= TARGET_MS else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
