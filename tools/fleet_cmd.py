"""`tcu fleet`: thousands of units, each running the firmware core, against a broker and a
backend. Progress on the terminal (rich), a JSON summary on stdout at the end.

--processes K forks K processes, each with a disjoint slice of the unit ids and its own
selector; their figures are summed once a second. Without a scenario every unit stays
dormant for the duration: connected, keeping alive, its status retained, no position.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
from dataclasses import replace
from typing import Any

from tcu.firmware.errors import UsageError
from tcu.tools.fleet_engine import FleetConfig
from tcu.tools.fleet_identity import backend_keys, e2e_keys, tls_identities, verifiers
from tcu.tools.fleet_scenario import Scenario, load
from tcu.tools.fleet_stats import FleetStats, merge, summary
from tcu.tools.fleet_tracks import trace_files

FILES_PER_PROCESS = 64  # beyond one socket per unit: the selector, the commander, the traces, stdio


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fleet", help="run N units (each the real firmware) against a broker")
    p.add_argument("--units", type=int, required=True, metavar="N", help="how many units")
    p.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--traces", nargs="+", required=True, metavar="DIR|FILE",
                   help="NMEA traces (files or directories of them): each unit drives one, from its own offset")
    p.add_argument("--scenario", metavar="FILE", help="a TOML scenario (see tools/fleet_scenario.py); "
                   "without one every unit stays dormant")
    p.add_argument("--duration", type=float, metavar="S", help="seconds to run once connected "
                   "(default: the scenario's, else 60)")
    p.add_argument("--processes", type=int, default=1, metavar="K", help="spread the units over K processes")
    p.add_argument("--first", type=int, default=0, metavar="I", help="the first unit's number (ids PREFIXNNNNN)")
    p.add_argument("--prefix", default="fleet-", help="unit id prefix (default fleet-)")
    p.add_argument("--boot", type=int, default=1, help="every unit's first boot number")
    p.add_argument("--spread-km", type=float, default=0.0, metavar="KM",
                   help="move each unit's track by up to KM kilometres (default: not moved)")
    p.add_argument("--connect-rate", type=float, default=1000.0, metavar="PER_S", help="new connections per second")
    p.add_argument("--keepalive", type=int, default=60, metavar="S", help="MQTT keep-alive (default 60)")
    p.add_argument("--backend-key", metavar="PEM", help="the backend's private key that signs the scenario's "
                   "commands (default: a fresh key the units are given)")
    p.add_argument("--e2e-key", metavar="PATTERN", help="seal located uplinks with this key file; {unit} in it "
                   "names one per unit, a directory holds UNIT.key")
    p.add_argument("--ca", metavar="FILE", help="mqtts://: the CA to trust")
    p.add_argument("--tls-cert", metavar="PATTERN", help="mqtts://: each unit's certificate: a file pattern with "
                   "{unit}, or a directory of UNIT.crt")
    p.add_argument("--tls-key", metavar="PATTERN", help="mqtts://: each unit's key: pattern with {unit}, or a "
                   "directory of UNIT.key")
    p.add_argument("--record", metavar="FILE", help="write every uplink sent (unit, boot, seq, session, located, "
                   "time) as JSON lines")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(run=run)


def raise_open_files(per_process: int) -> str | None:
    """Raise RLIMIT_NOFILE as far as allowed; a note when it was raised; UsageError when short."""
    need = per_process + FILES_PER_PROCESS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return None
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))  # root may raise the hard limit
            return "open-files limit raised from %d (hard %d) to %d" % (soft, hard, need)
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            raise UsageError("%d units in one process need about %d open files and the hard limit is %d: "
                             "use more --processes (each has its own limit) or raise it (ulimit -Hn, LimitNOFILE=)"
                             % (per_process, need, hard)) from None
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return "open-files limit raised from %d to %d" % (soft, need)


def config_of(args: argparse.Namespace) -> tuple[FleetConfig, float, Any]:
    if args.units < 1:
        raise UsageError("--units %d: at least 1" % args.units)
    if args.processes < 1 or args.processes > args.units:
        raise UsageError("--processes %d: from 1 to --units" % args.processes)
    if args.connect_rate <= 0 or args.keepalive < 5:
        raise UsageError("--connect-rate must be above 0 and --keepalive at least 5 s")
    scenario = load(args.scenario) if args.scenario else Scenario()
    duration = args.duration if args.duration is not None else scenario.duration_s or 60.0
    if duration <= 0:
        raise UsageError("--duration %s: must be above 0" % duration)
    private, public = backend_keys(args.backend_key, scenario.commands)
    config = FleetConfig(
        args.broker, first=args.first, count=args.units, prefix=args.prefix, boot=args.boot,
        traces=trace_files(args.traces), scenario=scenario, spread_km=args.spread_km, keepalive_s=args.keepalive,
        connect_rate=args.connect_rate / args.processes,
        tls=tls_identities(args.ca, args.tls_cert, args.tls_key, args.prefix, args.first),
        verifier=verifiers(public), e2e_key=e2e_keys(args.e2e_key, args.prefix, args.first), record=bool(args.record))
    from tcu.emulator.uplink import parse_broker_url

    parse_broker_url(args.broker)
    return config, duration, private


def slices(config: FleetConfig, processes: int) -> list[FleetConfig]:
    base, extra = divmod(config.count, processes)
    out, first = [], config.first
    for k in range(processes):
        count = base + (k < extra)
        out.append(replace(config, first=first, count=count, fleet_first=config.first, fleet_count=config.count))
        first += count
    return out


def _child(config: FleetConfig, duration: float, key: Any, queue: Any, record: str | None) -> None:
    from tcu.tools import fleet_run

    def each_second(fleet: Any) -> None:
        queue.put(("snap", config.first, fleet.stats.snapshot()))

    fleet, connect_s, run_s, rss_kb = fleet_run.run(config, duration, key, each_second)
    if record:
        with open("%s.%d" % (record, config.first), "w") as file:
            for unit, boot, seq, sid, located, when in fleet.records:
                file.write(json.dumps({"unit": unit, "boot": boot, "seq": seq, "session": sid,
                                       "located": located, "time": when}) + "\n")
    fleet.stats.window = type(fleet.stats.window)("d")
    queue.put(("done", config.first, (fleet.stats, connect_s, run_s, rss_kb)))


def probe(config: FleetConfig) -> None:
    """One connection as the first unit before the fleet starts: a broker that cannot be
    reached, a scheme that does not match its port, or a refused certificate is one line and
    exit 2, not units that wait a minute each and then run disconnected."""
    from tcu.emulator.uplink import open_client

    unit = "%s%05d" % (config.prefix, config.first)
    client = open_client(config.broker, "%s-probe-%d" % (unit, os.getpid()), tls=config.tls(unit))
    client.disconnect()
    client.loop_stop()


def run(args: argparse.Namespace) -> int:
    config, duration, key = config_of(args)
    parts = slices(config, args.processes)
    note = raise_open_files(max(p.count for p in parts))
    probe(config)  # once everything local is known to be right
    if note:
        print("fleet: %s" % note, file=sys.stderr)
    ctx = multiprocessing.get_context("fork")  # the config holds callables; the children share the imports
    queue: Any = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(part, duration, key, queue, args.record), daemon=True) for part in parts]
    for proc in procs:
        proc.start()
    done: dict[int, tuple[FleetStats, float | None, float, float]] = {}
    latest: dict[int, dict[str, Any]] = {}
    from tcu.tools.fleet_progress import Progress

    with Progress(args.units, quiet=args.quiet) as progress:
        while len(done) < len(procs):
            try:
                kind, first, data = queue.get(timeout=1.0)
            except Exception:  # queue.Empty: a child that died sends nothing more
                if all(not p.is_alive() for p in procs) and queue.empty():
                    break
                continue
            if kind == "snap":
                latest[first] = data
                progress.update(merge(list(latest.values())))
            else:
                done[first] = data
    for proc in procs:
        proc.join(5)
    if len(done) < len(procs):
        raise UsageError("%d of %d fleet processes died (see above)" % (len(procs) - len(done), len(procs)))
    if args.record:
        with open(args.record, "w") as out:
            for part in parts:
                path = "%s.%d" % (args.record, part.first)
                with open(path) as file:
                    out.write(file.read())
                os.unlink(path)
    results = [done[part.first] for part in parts]
    connects = [r[1] for r in results]
    result = summary([r[0] for r in results], units=args.units, processes=args.processes,
                     connect_s=None if None in connects else max(c for c in connects if c is not None),
                     run_s=max(r[2] for r in results),
                     rss_per_unit_kb=sum(r[3] * p.count for r, p in zip(results, parts, strict=True)) / args.units)
    print(json.dumps(result, indent=2))
    return 0

