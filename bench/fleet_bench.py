"""The fleet and the scaled-out backend on this machine: the figures of README "Fleets".

Setup (all real, started and stopped by PID here): a Mosquitto on a free loopback port
(open-files limit raised for 2 x N connections), a PostgreSQL with its default durability
(fsync on, synchronous_commit on) initdb'd in a temporary directory, `tcu backend` workers.

Phases, each in its own process so their memory does not mix:
  backend  stored uplinks/s: --messages uplinks queued by the broker in the workers'
           persistent sessions while they are stopped, then drained by SQLite (1 worker),
           PostgreSQL 1 worker, PostgreSQL 2 workers (--share); the rate is rows / (last
           received - first received), from the store's own timestamps.
  fleet    --units units (one process, one selector) connect; RSS growth per dormant unit;
           then --share of them in crash sessions sampled at 1 Hz for --seconds (a bench load
           profile: the product's crash period is 2 s), into 2 PostgreSQL workers: located
           uplinks/s, PUBACK p50/p99, fix-to-stored p99 (the store's received time minus the
           time the firmware sampled the fix, one clock), lost = located sent - stored.
  bare     the same count of bare paho clients on the same selector, the same share publishing
           a 27-byte QoS 1 message a second: the baseline. Ratios: fleet / bare.

Usage: python bench/fleet_bench.py [--units 10000] [--share 0.1] [--seconds 120] [--messages 20000]
       [--phases backend,fleet,bare]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import random
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test suite's real Mosquitto and PostgreSQL

import paho.mqtt.client as mqtt  # noqa: E402
from conftest import Mosquitto  # noqa: E402
from postgres import Postgres, pg_bindir  # noqa: E402

from tcu.emulator.uplink import uplink_topic  # noqa: E402
from tcu.firmware.services import CRASH, Service, default_services  # noqa: E402
from tcu.protocol import messages  # noqa: E402
from tcu.tools.fleet_stats import quantile  # noqa: E402


def _ms(samples: Any, q: float, digits: int) -> float | None:
    """The q-quantile of samples (seconds) in milliseconds, None when there are none."""
    value = quantile(samples, q)
    return None if value is None else round(value * 1000, digits)

TCU = [sys.executable, "-m", "tcu.tools.cli"]
TRACE = REPO / "tools" / "data" / "demo-drive.log"


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n), max(hard, n)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def workers(broker: str, store: str, count: int, log: Path, name: str) -> list[subprocess.Popen[bytes]]:
    """count backend workers (a shared subscription if more than one), once each is subscribed."""
    procs = []
    for k in range(count):
        share = ["--share", name] if count > 1 else []
        procs.append(subprocess.Popen([*TCU, "backend", "--broker", broker, "--store", store, *share, "--client-id",
                                       "bench-%s-w%d" % (name, k), "--json"], stdout=subprocess.DEVNULL,
                                      stderr=open(log, "ab")))  # noqa: SIM115
    deadline = time.monotonic() + 120
    while log.read_text().count("backend: subscribed") < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            stop(procs)
            raise RuntimeError("backend workers did not subscribe: %s" % log.read_text()[-2000:])
        time.sleep(0.1)
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def rows(store: str) -> list[tuple[str, int, int, float]]:
    from tcu.tools.store import open_store

    db = open_store(store)
    try:
        return [(str(u), int(b), int(s), float(r)) for u, b, s, r in
                db._query("SELECT unit, boot, seq, received FROM uplinks")]
    finally:
        db.close()


def wait_rows(store: str, count: int, timeout_s: float) -> int:
    from tcu.tools.store import open_store

    deadline = time.monotonic() + timeout_s
    db = open_store(store)
    try:
        while (n := db.count()) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return n
    finally:
        db.close()


def phase_backend(broker: Mosquitto, pg: Postgres, tmp: Path, total: int) -> dict[str, Any]:
    out = {}
    procs: list[subprocess.Popen[bytes]] = []
    for name, count in (("sqlite_1_worker", 1), ("postgresql_1_worker", 1), ("postgresql_2_workers", 2)):
        store = str(tmp / ("%s.db" % name)) if name.startswith("sqlite") else pg.new_database(name)
        log = tmp / ("%s.log" % name)
        stop(workers(broker.url, store, count, log, name))  # their persistent sessions now queue the backlog
        try:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            infos = [client.publish(uplink_topic("bench-%d" % (i % 20), 1),
                                    messages.encode_session_start(i // 20 + 1, 1, 1, 1_700_000_000, 1, None), qos=1)
                     for i in range(total)]
            for info in infos:
                info.wait_for_publish(60)
            client.disconnect()
            client.loop_stop()
            log.write_text("")
            procs = workers(broker.url, store, count, log, name)  # the backlog drains into the store
            stored = wait_rows(store, total, 300)
        finally:
            stop(procs)
        received = [r[3] for r in rows(store)]
        span = max(received) - min(received)
        out[name] = {"stored": stored, "sent": total, "stored_per_s": round(stored / span, 0) if span else None}
        print("backend %s: %s" % (name, out[name]), file=sys.stderr, flush=True)
    return out


def phase_fleet(broker: Mosquitto, pg: Postgres, tmp: Path, units: int, share: float, seconds: float) -> dict[str, Any]:
    from tcu.tools import fleet_run
    from tcu.tools.fleet_engine import FleetConfig
    from tcu.tools.fleet_scenario import Event, Scenario

    store = pg.new_database("fleet")
    procs = workers(broker.url, store, 2, tmp / "fleet-workers.log", "fleet")
    base = default_services()[CRASH]
    services = dict(default_services())
    services[CRASH] = Service(CRASH, base.purpose, 1, 3600, 100_000, base.fields, base.priority, base.mode,
                              base.occupant_can_cancel)  # the bench's 1 Hz load profile
    scenario = Scenario(events=(Event(0.0, share, None, trigger=CRASH),))
    config = FleetConfig(broker.url, count=units, prefix="bench-", traces=[str(TRACE)], scenario=scenario,
                         connect_rate=1000.0, record=True, services=services, spread_km=50)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        fleet, connect_s, run_s, rss_kb = fleet_run.run(config, seconds, None)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        located = {(u, b, s): t for u, b, s, sid, loc, t in fleet.records if loc}
        time.sleep(2)
        wait_rows(store, len(fleet.records), 120)
    finally:
        stop(procs)
    stored = {(u, b, s): r for u, b, s, r in rows(store)}
    delays = [stored[k] - t for k, t in located.items() if k in stored]
    stats = fleet.stats
    result = {"units": units, "connect_s": round(connect_s, 1) if connect_s else None,
              "rss_per_dormant_unit_kb": round(rss_kb, 1), "in_session": round(units * share), "run_s": round(run_s, 1),
              "located_sent": len(located), "located_per_s": round(len(located) / run_s, 1),
              "lost": len(located) - len(delays), "puback_p50_ms": _ms(stats.latencies, 0.5, 2),
              "puback_p99_ms": _ms(stats.latencies, 0.99, 2),
              "fix_to_stored_p50_ms": _ms(delays, 0.5, 1),
              "fix_to_stored_p99_ms": _ms(delays, 0.99, 1),
              "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
              "errors": stats.errors}
    print("fleet: %s" % result, file=sys.stderr, flush=True)
    return result


def phase_bare(broker: Mosquitto, units: int, share: float, seconds: float) -> dict[str, Any]:
    """Bare paho: the same clients on one selector, a fixed 27-byte QoS 1 message a second."""
    sel = selectors.DefaultSelector()
    latencies: list[float] = []
    sent: dict[tuple[int, int], float] = {}
    connected = [0]

    def open_(c: mqtt.Client, ud: Any, sock: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(sock, selectors.EVENT_READ, c)

    def on_publish(c: mqtt.Client, ud: Any, mid: int, rc: Any, props: Any) -> None:
        t = sent.pop((ud, mid), None)
        if t is not None:
            latencies.append(time.monotonic() - t)

    def on_connect(*args: Any) -> None:
        connected[0] += 1

    def turn(timeout: float) -> None:
        for key, mask in sel.select(timeout):
            if mask & selectors.EVENT_READ:
                key.data.loop_read()
            if mask & selectors.EVENT_WRITE:
                key.data.loop_write()

    def misc(clients: list[mqtt.Client], k: int) -> None:
        for c in clients[k % 10::10]:
            c.loop_misc()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    rss0 = int(open("/proc/self/statm").read().split()[1]) * 4096
    clients = []
    start = time.monotonic()
    for i in range(units):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare-%05d" % i, protocol=mqtt.MQTTv5,
                        userdata=i)
        c.on_socket_open = open_
        c.on_socket_close = lambda c, ud, s: None if sel.unregister(s) else None
        c.on_socket_register_write = lambda c, ud, s: None if sel.modify(
            s, selectors.EVENT_READ | selectors.EVENT_WRITE, c) else None
        c.on_socket_unregister_write = lambda c, ud, s: None if sel.modify(s, selectors.EVENT_READ, c) else None
        c.on_publish = on_publish
        c.on_connect = on_connect
        c.connect("127.0.0.1", broker.port, 60)
        clients.append(c)
        while time.monotonic() < start + (i + 1) / 1000.0:
            turn(0.001)
        turn(0)
    while connected[0] < units and time.monotonic() < start + 120:
        turn(0.05)
    connect_s = time.monotonic() - start
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        turn(0.05)
    rss = (int(open("/proc/self/statm").read().split()[1]) * 4096 - rss0) / units / 1024
    talkers = random.Random(1).sample(range(units), round(units * share))
    payload = bytes(27)
    t0 = time.monotonic()
    tick, k = t0, 0
    count = 0
    while time.monotonic() < t0 + seconds:
        turn(0.05)
        if time.monotonic() >= tick:
            tick += 1.0
            for i in talkers:
                info = clients[i].publish("bare/%d" % i, payload, qos=1)
                sent[(i, info.mid)] = time.monotonic()
                count += 1
        k += 1
        misc(clients, k)
    drain = time.monotonic() + 10
    while sent and time.monotonic() < drain:
        turn(0.05)
    run_s = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for c in clients:
        c.disconnect()
    turn(0.5)
    result = {"units": units, "connect_s": round(connect_s, 1), "rss_per_client_kb": round(rss, 1),
              "sent": count, "per_s": round(count / seconds, 1), "lost": len(sent),
              "puback_p50_ms": _ms(latencies, 0.5, 2),
              "puback_p99_ms": _ms(latencies, 0.99, 2),
              "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
              "run_s": round(run_s, 1)}
    print("bare: %s" % result, file=sys.stderr, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--phases", default="backend,fleet,bare")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # one phase, in this process
    parser.add_argument("--broker-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pg-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_nofile(2 * args.units + 4096)
    if args.phase:
        return run_phase(args)
    tmp = Path(tempfile.mkdtemp(prefix="tcu-fleet-bench-"))
    broker = Mosquitto(tmp)
    with open(broker.config, "a") as conf:  # stay this user: it owns the log's directory
        conf.write("user %s\n" % getpass.getuser())
    broker.start()
    bindir = pg_bindir()
    assert bindir, "postgresql is not installed"
    pg = Postgres(bindir, fsync=True)
    pg.start()
    results: dict[str, Any] = {}
    try:
        for phase in args.phases.split(","):
            cmd = [sys.executable, __file__, "--phase", phase, "--units", str(args.units), "--share", str(args.share),
                   "--seconds", str(args.seconds), "--messages", str(args.messages),
                   "--broker-port", str(broker.port), "--pg-port", str(pg.port)]
            done = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, env=dict(os.environ, TCU_BENCH_TMP=str(tmp)))
            results[phase] = json.loads(done.stdout)
    finally:
        pg.stop()
        broker.stop()
    if "fleet" in results and "bare" in results:
        fleet, bare = results["fleet"], results["bare"]
        results["ratio_fleet_to_bare"] = {
            "rss_per_unit": round(fleet["rss_per_dormant_unit_kb"] / bare["rss_per_client_kb"], 2),
            "cpu": round(fleet["cpu_s"] / bare["cpu_s"], 2) if bare["cpu_s"] else None,
            "puback_p99": round(fleet["puback_p99_ms"] / bare["puback_p99_ms"], 2),
            "connect_s": round(fleet["connect_s"] / bare["connect_s"], 2) if fleet["connect_s"] else None}
    print(json.dumps(results, indent=2))
    return 0


def run_phase(args: argparse.Namespace) -> int:
    tmp = Path(os.environ["TCU_BENCH_TMP"])
    broker = Mosquitto.__new__(Mosquitto)
    broker.port, broker.url = args.broker_port, "mqtt://127.0.0.1:%d" % args.broker_port
    pg = Postgres.__new__(Postgres)
    pg.port, pg.url = args.pg_port, "postgresql://tcu@127.0.0.1:%d/postgres" % args.pg_port
    if args.phase == "backend":
        result = phase_backend(broker, pg, tmp, args.messages)
    elif args.phase == "fleet":
        result = phase_fleet(broker, pg, tmp, args.units, args.share, args.seconds)
    else:
        result = phase_bare(broker, args.units, args.share, args.seconds)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
