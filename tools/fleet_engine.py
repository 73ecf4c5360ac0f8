"""Many units in one process: each runs the firmware core (Unit.handle(event, now)) with its
own id, boot and MQTT client, and all of their sockets share one selector.

One paho client per unit, on paho's external-loop API (on_socket_open/close/register_write,
loop_read/loop_write/loop_misc): no thread and no socket pair per client, about 5 KB each, so
10,000 units fit one process. A dormant unit holds only its connection, keep-alive and status
(retained, with the offline status as its last will): no track is picked and no position is
decoded until a session starts. Units in a session get their track's next fix once a second;
firmware timers are checked on the same beat. As `tcu run`, each unit's firmware runs on the
monotonic clock (bounds, periods, timers) and is given wall time separately: its receiver's
GNSS time, the host's wall clock when a session starts, carried on the monotonic clock during
it (FleetConfig.clock: both injectable, so a test steps the wall clock, never the machine's).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tcu.emulator.crypto import seal_uplink
from tcu.emulator.uplink import (
    SESSION_EXPIRY_S,
    TlsOptions,
    parse_broker_url,
    status_payload,
    status_topic,
    uplink_topic,
)
from tcu.emulator.wallclock import Clocks
from tcu.firmware.clock import WallTime
from tcu.firmware.events import Downlink, FixEvent, Publish, Shutdown, Tick, TriggerOff, TriggerOn
from tcu.firmware.services import Service, default_services
from tcu.firmware.unit import Refused, Unit
from tcu.protocol.commands import CommandVerifier, downlink_topic
from tcu.protocol.messages import TIME_GNSS
from tcu.tools.fleet_scenario import Scenario
from tcu.tools.fleet_stats import FleetStats
from tcu.tools.fleet_tracks import Tracks, UnitTrack

MISC_SLICES = 10  # loop_misc (keep-alive) for a tenth of the clients every 0.1 s


@dataclass
class FleetConfig:
    broker: str
    first: int = 0  # this process's units are first .. first + count - 1
    count: int = 1
    fleet_first: int = 0  # the whole fleet's ids (over every process): scripted shares pick from these
    fleet_count: int = 0  # 0: this process is the whole fleet
    prefix: str = "fleet-"
    boot: int = 1
    traces: list[str] = field(default_factory=list)
    scenario: Scenario = field(default_factory=Scenario)
    spread_km: float = 0.0
    keepalive_s: int = 60
    connect_rate: float = 1000.0  # new connections per second
    tls: Callable[[str], TlsOptions | None] = lambda unit_id: None
    verifier: Callable[[str], CommandVerifier | None] = lambda unit_id: None
    e2e_key: Callable[[str], bytes | None] = lambda unit_id: None  # located uplinks sealed for the backend
    record: bool = False  # keep (unit, boot, seq, sid, located, fix time) of every uplink
    services: dict[int, Service] | None = None  # None: the firmware's defaults (a bench may load harder)
    clock: Clocks = field(default_factory=Clocks)  # monotonic for the firmware, system: the host's wall clock


class SimUnit:
    __slots__ = ("index", "uid", "boot", "client", "unit", "track", "start_ms", "start_wall_ms", "fixes", "last_ms",
                 "offline_until")

    def __init__(self, index: int, uid: str, boot: int, client: mqtt.Client, unit: Unit, track: UnitTrack) -> None:
        self.index = index
        self.uid = uid
        self.boot = boot
        self.client = client
        self.unit = unit
        self.track = track
        self.start_ms = 0  # when the current stretch of sessions began (monotonic: the receiver's epoch 0)
        self.start_wall_ms = 0  # ... and its wall time: the receiver's GNSS time at epoch 0
        self.fixes = 0  # epochs fed since: fix n is at start_ms + n s, so a 1 s period is met exactly
        self.last_ms = 0  # the unit's monotonic clock never goes backwards
        self.offline_until = 0.0  # an outage or reboot: no reconnect before this (monotonic)


class Fleet:
    """Run with `Fleet(config).run(duration_s, on_second)`; `stats` holds the figures."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.broker = parse_broker_url(config.broker)
        self.sel = selectors.DefaultSelector()
        self.stats = FleetStats()
        self.tracks = Tracks(config.traces)
        self.services = config.services or default_services()  # shared: the firmware only reads it
        self.rng = random.Random(config.scenario.seed * 1_000_003 + config.first)
        self.units: list[SimUnit] = []
        self.active: set[SimUnit] = set()  # units in a session: fed a fix a second
        self.sent: dict[tuple[int, int], tuple[float, bool]] = {}  # (unit index, mid) -> (sent at, located)
        self.records: list[tuple[str, int, int, int, bool, float]] = []
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._misc_slice = 0
        self.commander: Any = None  # the backend's command sender (fleet_run.Commander)
        self.on_ack: Callable[[float, bool], None] | None = None  # (latency s, located): Locust's statistics

    # -- clients
    def _client(self, index: int, uid: str) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tcu-%s" % uid, protocol=mqtt.MQTTv5)
        tls = self.config.tls(uid)
        if self.broker.tls:
            tls = tls or TlsOptions()
            client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
        if self.broker.auth is not None:  # USER:PASSWORD@ in --broker
            client.username_pw_set(self.broker.auth.username, self.broker.auth.password)  # type: ignore[arg-type]
        client.will_set(status_topic(uid), status_payload(False), qos=1, retain=True)
        self.attach(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def attach(self, client: mqtt.Client) -> None:
        """Put a paho client's socket on the fleet's selector."""
        sel = self.sel

        def opened(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            if isinstance(sock, socket.socket) and sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait on a PUBLISH
            sel.register(sock, selectors.EVENT_READ, c)

        def closed(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            try:
                sel.unregister(sock)
            except (KeyError, ValueError):
                pass

        def want_write(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            try:
                sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            except (KeyError, ValueError):
                pass

        def done_writing(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            try:
                sel.modify(sock, selectors.EVENT_READ, c)
            except (KeyError, ValueError):
                pass

        client.on_socket_open = opened
        client.on_socket_close = closed
        client.on_socket_register_write = want_write
        client.on_socket_unregister_write = done_writing

    def _connect(self, sim: SimUnit) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            sim.client.connect(self.broker.host, self.broker.port, self.config.keepalive_s,
                               clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=props)
        except (OSError, ValueError) as err:
            self.stats.error("connect: %s" % (getattr(err, "strerror", None) or err))
            self.at(time.monotonic() + 1 + self.rng.random(), lambda: self._reconnect(sim))

    def _reconnect(self, sim: SimUnit) -> None:
        if sim.client.is_connected() or time.monotonic() < sim.offline_until:
            return
        try:
            sim.client.reconnect()
        except (OSError, ValueError) as err:
            self.stats.error("reconnect: %s" % (getattr(err, "strerror", None) or err))
            self.at(time.monotonic() + 1 + self.rng.random(), lambda: self._reconnect(sim))

    def _on_connect(self, client: mqtt.Client, sim: SimUnit, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.stats.error("CONNACK: %s" % reason)
            return
        self.stats.connected += 1
        self.stats.connects += 1
        client.publish(status_topic(sim.uid), status_payload(True), qos=1, retain=True)
        if sim.unit.verifier is not None:
            client.subscribe(downlink_topic(sim.uid), qos=1)

    def _on_disconnect(self, client: mqtt.Client, sim: SimUnit, flags: Any, reason: Any, props: Any) -> None:
        self.stats.connected -= 1
        self.stats.disconnects += 1
        if not self.stopping:
            when = max(sim.offline_until, time.monotonic() + 1 + self.rng.random())
            self.at(when, lambda: self._reconnect(sim))

    def _on_publish(self, client: mqtt.Client, sim: SimUnit, mid: int, reason: Any, props: Any) -> None:
        sent = self.sent.pop((sim.index, mid), None)
        if reason.is_failure:
            self.stats.error("PUBACK: %s" % reason)
            return
        if sent is not None:
            latency = time.monotonic() - sent[0]
            self.stats.acked(latency, sent[1])
            if self.on_ack is not None:
                self.on_ack(latency, sent[1])

    def _on_message(self, client: mqtt.Client, sim: SimUnit, message: mqtt.MQTTMessage) -> None:
        self.handle(sim, Downlink(bytes(message.payload)))

    # -- the firmware
    def handle(self, sim: SimUnit, event: Any, at_ms: int | None = None) -> None:
        """One event at the unit's monotonic time at_ms (a fix's epoch), else now."""
        now_ms = sim.last_ms = max(sim.last_ms, self.config.clock.monotonic_ms() if at_ms is None else at_ms)
        # Each simulated unit's receiver has a fix with a date (its track is retimed to now), so its
        # wall time is GNSS time, trusted: command validity windows are checked against it. In a
        # session it runs on from the session's start with the monotonic clock (a receiver's time
        # does not follow the host's clock steps); a dormant unit takes the host's wall clock.
        if sim in self.active:
            wall_ms = sim.start_wall_ms + now_ms - sim.start_ms
        else:
            wall_ms = int(self.config.clock.system() * 1000)
        try:
            actions = sim.unit.handle(event, now_ms, WallTime(wall_ms, TIME_GNSS))
        except Refused:
            return
        for action in actions:
            if isinstance(action, Publish):
                self.publish(sim, action, wall_ms)
        if sim.unit.sessions and sim not in self.active:
            self.active.add(sim)
            sim.start_ms, sim.start_wall_ms, sim.fixes = now_ms, wall_ms, 0
        elif not sim.unit.sessions:
            self.active.discard(sim)

    def publish(self, sim: SimUnit, action: Publish, wall_ms: int) -> None:
        topic = uplink_topic(sim.uid, sim.boot)
        payload = action.payload
        key = self.config.e2e_key(sim.uid) if action.located else None
        if key is not None:
            payload = seal_uplink(payload, key, topic)
        info = sim.client.publish(topic, payload, qos=1)
        self.sent[(sim.index, info.mid)] = (time.monotonic(), action.located)
        self.stats.published(action.located)
        if self.config.record:
            self.records.append((sim.uid, sim.boot, action.seq, action.sid, action.located, wall_ms / 1000))

    def _feed(self) -> None:
        """Each unit in a session gets the receiver epoch due by now (its fix n at start + n s,
        as a 1 Hz receiver; a loop that fell behind skips to the latest); due timers fire."""
        now_ms = self.config.clock.monotonic_ms()
        for sim in list(self.active):
            due = sim.unit.next_timer()
            if due is not None and due <= now_ms:
                self.handle(sim, Tick())
            behind = (now_ms - sim.start_ms) // 1000 - sim.fixes
            if behind <= 0 or not sim.unit.sessions:
                continue
            sim.fixes += behind
            epoch_ms = sim.start_ms + sim.fixes * 1000  # monotonic; the fix's own time is GNSS time
            fix = sim.track.fix_at(self.tracks, sim.fixes, sim.start_wall_ms + sim.fixes * 1000)
            self.handle(sim, FixEvent(fix), epoch_ms)
        self.stats.in_session = len(self.active)

    # -- scenario actions
    def trigger(self, sim: SimUnit, kind: int, hold_s: float | None = None) -> None:
        self.stats.triggers += 1
        self.handle(sim, TriggerOn(kind))
        if hold_s is not None:
            self.at(time.monotonic() + hold_s, lambda: self.handle(sim, TriggerOff(kind)))

    def outage(self, sim: SimUnit, seconds: float) -> None:
        """The link drops without a DISCONNECT (the broker sends the last will); back after `seconds`."""
        sock = sim.client.socket()
        if not isinstance(sock, socket.socket):  # not connected now
            return
        self.stats.outages += 1
        sim.offline_until = time.monotonic() + seconds
        try:
            sock.shutdown(socket.SHUT_RDWR)  # paho sees the connection lost at its next read
        except OSError:
            pass

    def reboot(self, sim: SimUnit, seconds: float) -> None:
        """Sessions end (their ends are sent), the link goes down; back after `seconds` with the next boot."""
        self.stats.reboots += 1
        self.handle(sim, Shutdown())
        sim.offline_until = time.monotonic() + seconds
        sim.boot += 1
        sim.unit = Unit(self.services, verifier=sim.unit.verifier, command_counter=sim.unit.command_counter)
        self.outage(sim, seconds)

    # -- the loop
    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._order), action))

    def start_units(self) -> None:
        cfg = self.config
        t0 = time.monotonic()
        for n in range(cfg.count):
            index = cfg.first + n
            uid = "%s%05d" % (cfg.prefix, index)
            client = self._client(index, uid)
            unit = Unit(self.services, verifier=cfg.verifier(uid))
            track = UnitTrack(cfg.scenario.seed * 7919 + index, cfg.spread_km)
            sim = SimUnit(index, uid, cfg.boot, client, unit, track)
            client.user_data_set(sim)
            self.units.append(sim)
            self.at(t0 + n / cfg.connect_rate, functools.partial(self._connect, sim))

    stopping = False

    def step(self, timeout: float) -> None:
        """One turn: socket I/O, then whatever is due."""
        for key, mask in self.sel.select(timeout):
            client = key.data
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE:
                client.loop_write()
        now = time.monotonic()
        while self._queue and self._queue[0][0] <= now:
            heapq.heappop(self._queue)[2]()

    def next_due(self, cap: float) -> float:
        return max(0.0, min(cap, self._queue[0][0] - time.monotonic())) if self._queue else cap

    def run_until(self, deadline: float, on_second: Callable[[], None] | None = None,
                  until: Callable[[], bool] | None = None) -> None:
        next_second = next_tenth = time.monotonic()
        while time.monotonic() < deadline and not (until and until()):
            self.step(self.next_due(0.05))
            now = time.monotonic()
            if now >= next_tenth:
                next_tenth = now + 0.1
                self._misc()
                self._feed()  # epochs fed within 0.1 s of their time
            if now >= next_second:
                next_second += 1.0
                if on_second is not None:
                    on_second()

    def _misc(self) -> None:
        """Keep-alive: paho's loop_misc for one slice of the clients."""
        for sim in self.units[self._misc_slice::MISC_SLICES]:
            sim.client.loop_misc()
        if self.commander is not None:
            self.commander.client.loop_misc()
        self._misc_slice = (self._misc_slice + 1) % MISC_SLICES

    def all_connected(self) -> bool:
        return self.stats.connected >= len(self.units)

    def stop(self, drain_s: float = 10.0, on_second: Callable[[], None] | None = None) -> None:
        """Every unit shuts down (its sessions end and are sent), PUBACKs are awaited, then
        each says offline and disconnects."""
        for sim in self.units:
            if sim.unit.sessions:
                self.handle(sim, Shutdown())
            if not sim.client.is_connected():  # back from an outage or reboot early: deliver what it holds
                sim.offline_until = 0.0
                self._reconnect(sim)
        self.run_until(time.monotonic() + drain_s, on_second, until=lambda: not self.sent)
        self.stopping = True
        for sim in self.units:
            if sim.client.is_connected():
                sim.client.publish(status_topic(sim.uid), status_payload(False), qos=1, retain=True)
                sim.client.disconnect()
        if self.commander is not None:
            self.commander.client.disconnect()
        self.run_until(time.monotonic() + 2, until=lambda: self.stats.connected <= 0)
        self.stats.lost = len([s for s in self.sent.values() if s[1]])
