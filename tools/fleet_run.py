"""One process's fleet from start to end: connect every unit (at --connect-rate), then play
the scenario for the duration (time 0 is when the last unit connected), then stop.

The scenario's rates are Poisson processes over the whole process's units (the same
statistics as one per unit, one heap entry per kind); scripted events pick their share of
units with the scenario's seed. Backend commands are signed with the backend's key and
published by one commander client to each unit's downlink topic, through the broker.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tcu.firmware.services import REMOTE
from tcu.protocol import commands as cmd
from tcu.protocol import cose
from tcu.tools.fleet_engine import Fleet, FleetConfig, SimUnit
from tcu.tools.fleet_scenario import Event

CONNECT_WAIT_S = 60.0
COMMAND_CODES = {"lawful-request": cmd.CMD_LAWFUL_REQUEST, "track-stolen": cmd.CMD_TRACK_STOLEN,
                 "locate-now": cmd.CMD_LOCATE_NOW, "cancel": cmd.CMD_CANCEL}


class Commander:
    """The backend's side: signs commands (COSE_Sign1, Ed25519) and publishes them at QoS 1."""

    def __init__(self, fleet: Fleet, key: Ed25519PrivateKey) -> None:
        self.fleet = fleet
        self.key = key
        self.counter = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id="tcu-fleet-commander-%d-%d" % (os.getpid(), fleet.config.first))
        fleet.attach(self.client)
        if fleet.broker.auth is not None:
            self.client.username_pw_set(fleet.broker.auth.username, fleet.broker.auth.password)  # type: ignore[arg-type]
        self.client.connect(fleet.broker.host, fleet.broker.port, fleet.config.keepalive_s)

    def send(self, sim: SimUnit, event: Event) -> bool:
        """One command to one unit; False when it does not apply (locate-now with no session)."""
        now_s = int(time.time())
        code = COMMAND_CODES[event.command or ""]
        if code in (cmd.CMD_LAWFUL_REQUEST, cmd.CMD_TRACK_STOLEN):
            body: dict[int, Any] = {cmd.ARG_CASE: event.case, cmd.ARG_UNTIL: now_s + int(event.for_s)}
        else:
            sessions = [s for s in sim.unit.sessions.values()
                        if code == cmd.CMD_LOCATE_NOW or s.service.mode == REMOTE]
            if not sessions:
                return False
            body = {cmd.ARG_SESSION: sessions[0].sid}
        self.counter = max(self.counter + 1, int(time.time() * 1000))  # only grows
        command = cmd.Command(sim.uid, self.counter, now_s - 30, now_s + 300, code, body)
        data = cmd.seal_command(command, b"backend", cose.ALG_EDDSA, None, self.key.sign)
        self.client.publish(cmd.downlink_topic(sim.uid), data, qos=1)
        self.fleet.stats.commands += 1
        return True


def schedule(fleet: Fleet, t0: float, duration_s: float, commander: Commander | None) -> None:
    """Put the scenario's events, rates and churn on the fleet's queue, from t0."""
    scenario = fleet.config.scenario
    units = fleet.units
    rng = fleet.rng
    for order, event in enumerate(scenario.events):
        fleet.at(t0 + event.at_s, functools.partial(_scripted, fleet, event, commander, order))

    def poisson(per_unit_hour: float, act: Callable[[SimUnit], None]) -> None:
        rate = per_unit_hour * len(units) / 3600  # per second, over this process's units
        if rate <= 0:
            return

        def fire() -> None:
            act(units[rng.randrange(len(units))])
            after = time.monotonic() + rng.expovariate(rate)
            if after < t0 + duration_s:
                fleet.at(after, fire)

        first = t0 + rng.expovariate(rate)
        if first < t0 + duration_s:
            fleet.at(first, fire)

    for kind, rate in scenario.rates.items():
        poisson(rate, functools.partial(_trigger, fleet, kind))
    poisson(scenario.outages, lambda sim: fleet.outage(sim, scenario.outage_s))
    poisson(scenario.reboots, lambda sim: fleet.reboot(sim, scenario.reboot_s))


def _trigger(fleet: Fleet, kind: int, sim: SimUnit) -> None:
    fleet.trigger(sim, kind)


def _scripted(fleet: Fleet, event: Event, commander: Commander | None, order: int) -> None:
    """An event's share of the whole fleet, the same units in every process (seeded by the
    scenario); locate-now and cancel pick among this process's units in a session."""
    cfg = fleet.config
    if event.command in ("locate-now", "cancel"):
        pool = [s for s in fleet.units if s.unit.sessions]
        chosen = fleet.rng.sample(pool, event.count(len(pool))) if pool else []
    else:
        total = cfg.fleet_count or cfg.count
        first = cfg.fleet_first if cfg.fleet_count else cfg.first
        picked = random.Random(cfg.scenario.seed * 65_537 + order).sample(range(total), event.count(total))
        chosen = [fleet.units[i + first - cfg.first] for i in picked if 0 <= i + first - cfg.first < cfg.count]
    for sim in chosen:
        if event.trigger is not None:
            fleet.trigger(sim, event.trigger, event.hold_s)
        elif commander is not None:
            commander.send(sim, event)


def rss_bytes() -> int:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(config: FleetConfig, duration_s: float, key: Ed25519PrivateKey | None,
        on_second: Callable[[Fleet], None] | None = None,
        on_ack: Callable[[float, bool], None] | None = None) -> tuple[Fleet, float | None, float, float]:
    """Run one process's fleet; (fleet, seconds to connect all or None, run seconds, RSS
    growth per unit in KB while dormant)."""
    fleet = Fleet(config)
    fleet.on_ack = on_ack
    tick = (lambda: on_second(fleet)) if on_second else None
    before = rss_bytes()
    commander = Commander(fleet, key) if key is not None and config.scenario.commands else None
    fleet.commander = commander
    start = time.monotonic()
    fleet.start_units()
    fleet.run_until(start + CONNECT_WAIT_S + config.count / config.connect_rate, tick, until=fleet.all_connected)
    connect_s = time.monotonic() - start if fleet.all_connected() else None
    fleet.run_until(time.monotonic() + 0.5, tick)  # the status PUBACKs and subscriptions settle
    rss_kb = (rss_bytes() - before) / max(1, config.count) / 1024
    t0 = time.monotonic()
    schedule(fleet, t0, duration_s, commander)
    fleet.run_until(t0 + duration_s, tick)
    run_s = time.monotonic() - t0
    fleet.stop(on_second=tick)
    return fleet, connect_s, run_s, rss_kb
