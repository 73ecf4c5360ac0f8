"""A tcu fleet under Locust: `locust -f tools/locustfile.py --master` and `--worker`
processes on any number of machines run one fleet, with Locust's statistics and web UI.

Each Locust user is a whole fleet slice (a Fleet of --fleet-units units on one selector,
tools/fleet_engine.py); every PUBACK is a Locust request ("MQTT", "located" or "uplink",
its latency), every fleet error a failure. Unit ids carry the worker's index and the user's
number in that worker, so workers' units are disjoint: PREFIX<worker>-<user>-NNNNN.

    locust -f tools/locustfile.py --headless --master --expect-workers 2 -u 2 -r 2 --run-time 2m \\
        --fleet-broker mqtt://127.0.0.1:1883 --fleet-units 5000 --fleet-traces traces/ --fleet-duration 100
    locust -f tools/locustfile.py --worker --master-host MASTER   # on each machine

The fleet runs for --fleet-duration seconds once connected, then ends its sessions and
disconnects: keep Locust's --run-time longer than that plus the connection time.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

from locust import User, events, task
from locust.exception import StopUser

from tcu.tools.fleet_engine import FleetConfig
from tcu.tools.fleet_identity import backend_keys, verifiers
from tcu.tools.fleet_scenario import Scenario, load
from tcu.tools.fleet_tracks import trace_files

_users = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--fleet-broker", default="mqtt://127.0.0.1:1883", help="the broker (mqtt://HOST:PORT)")
    parser.add_argument("--fleet-units", type=int, default=100, help="units per Locust user")
    parser.add_argument("--fleet-traces", default="", help="NMEA trace files or directories, comma separated")
    parser.add_argument("--fleet-scenario", default="", help="a tcu fleet scenario (TOML)")
    parser.add_argument("--fleet-duration", type=float, default=60.0, help="seconds once connected")
    parser.add_argument("--fleet-prefix", default="locust-", help="unit id prefix")
    parser.add_argument("--fleet-connect-rate", type=float, default=500.0, help="connections per second per user")
    parser.add_argument("--fleet-record", default="", help="a directory: each user writes the uplinks it sent")


class FleetUser(User):
    """One slice of the fleet; its task runs the slice to the end, once."""

    def on_start(self) -> None:
        options = self.environment.parsed_options
        runner = self.environment.runner
        worker = getattr(runner, "worker_index", 0)
        self.number = next(_users)
        scenario = load(options.fleet_scenario) if options.fleet_scenario else Scenario()
        self.key, public = backend_keys(None, scenario.commands)
        self.config = FleetConfig(
            options.fleet_broker, count=options.fleet_units,
            prefix="%s%d-%d-" % (options.fleet_prefix, worker, self.number),
            traces=trace_files([t for t in options.fleet_traces.split(",") if t]), scenario=scenario,
            connect_rate=options.fleet_connect_rate, verifier=verifiers(public), record=bool(options.fleet_record))
        self.duration = options.fleet_duration
        self.record_dir = options.fleet_record

    def _ack(self, latency_s: float, located: bool) -> None:
        self.environment.events.request.fire(request_type="MQTT", name="located" if located else "uplink",
                                             response_time=latency_s * 1000, response_length=0, exception=None,
                                             context={})

    @task
    def run_fleet(self) -> None:
        from tcu.tools import fleet_run

        errors = [0]

        def each_second(fleet: Any) -> None:
            for line in fleet.stats.error_lines[errors[0]:]:
                self.environment.events.request.fire(request_type="MQTT", name="error", response_time=0,
                                                     response_length=0, exception=RuntimeError(line), context={})
            errors[0] = len(fleet.stats.error_lines)

        fleet, connect_s, run_s, rss_kb = fleet_run.run(self.config, self.duration, self.key, each_second, self._ack)
        summary = {"prefix": self.config.prefix, "units": self.config.count, "connect_s": connect_s,
                   "uplinks": fleet.stats.uplinks, "located": fleet.stats.located, "lost": fleet.stats.lost,
                   "errors": fleet.stats.errors}
        if self.record_dir:
            path = os.path.join(self.record_dir, "%s.jsonl" % self.config.prefix.rstrip("-"))
            with open(path, "w") as file:
                for unit, boot, seq, sid, located, when in fleet.records:
                    file.write(json.dumps({"unit": unit, "boot": boot, "seq": seq, "session": sid,
                                           "located": located, "time": when}) + "\n")
            with open(path + ".summary", "w") as file:
                json.dump(summary, file)
        raise StopUser()
