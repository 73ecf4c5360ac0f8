"""The unit on wall-clock time: the firmware, its durable uplink, its downlink, its timers.

Every input (a trigger, a fix from the HAL, a downlink command, a timer) goes through one
lock into Unit.handle(event, now); the actions that come back are carried out in order.
A PersistCounter action is written and fsynced before the actions after it run, so an
accepted command can never be replayed, not even after a power cut.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from tcu.emulator.audit import RETENTION_S, AuditLog
from tcu.emulator.credentials import Credentials
from tcu.emulator.crypto import seal_uplink
from tcu.emulator.link import DurableUplink
from tcu.emulator.uplink import TlsOptions, open_client, uplink_topic
from tcu.emulator.wallclock import Clocks
from tcu.firmware.errors import LinkError, SourceError, UsageError
from tcu.firmware.events import Downlink, FixEvent, Indicator, PersistCounter, Publish, Shutdown, Tick, TriggerOn
from tcu.firmware.services import PURPOSE_NAMES, Service
from tcu.firmware.unit import MSD_TRIGGERS, Unit
from tcu.protocol import messages
from tcu.protocol.commands import CommandVerifier, downlink_topic


class CounterStore:
    """The last accepted command counter, in a file that survives crashes (write, fsync,
    rename, fsync the directory)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as err:
            raise SourceError("cannot read the command counter %s: %s" % (self.path, err.strerror or err)) from None
        if not text.isdigit():
            raise SourceError("the command counter file %s is corrupt: %r" % (self.path, text[:20]))
        return int(text)

    def save(self, counter: int) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".counter-")
        try:
            os.write(fd, b"%d\n" % counter)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class LiveUnit:
    """Run with `with LiveUnit(url, unit_id, state_dir, verifier) as unit: unit.handle(event)`.

    state_dir keeps the outbox, the command counter and the disclosure audit log (one
    record per located uplink, see emulator/audit.py). e2e_key (16 or 32 bytes): located
    uplinks are sealed as COSE_Encrypt0 for the backend, opaque to the broker.
    """

    def __init__(self, url: str, unit_id: str, state_dir: str | os.PathLike[str],
                 verifier: CommandVerifier | None = None, *, tls: TlsOptions | None = None,
                 e2e_key: bytes | None = None, on_indicator: Callable[[bool], None] | None = None,
                 clocks: Clocks | None = None, audit_retention_s: int = RETENTION_S,
                 services: dict[int, Service] | None = None, auth: Credentials | None = None,
                 vehicle: Any = None, offline_ok: bool = False) -> None:
        """offline_ok (a unit on a modem): start without a data path; the downlink connects
        when the modem first has one (set_data_path)."""
        state = Path(state_dir)
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError("cannot create the unit's state directory %s: %s" % (state, err.strerror)) from None
        self.unit_id = unit_id
        self.clocks = clocks or Clocks()  # monotonic for the firmware; wall readings (emulator/wallclock.py)
        self.e2e_key = e2e_key
        self.on_indicator = on_indicator
        self.counter = CounterStore(state / "command-counter")
        from tcu.emulator.msd import Vehicle, encoder_for
        self.unit = Unit(services, verifier=verifier, command_counter=self.counter.load(),
                         msd_encoder=encoder_for(vehicle if vehicle is not None else Vehicle()))
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._timer_changed = threading.Event()
        self.on_publish: Callable[[Publish], None] | None = None  # each uplink as it went to the outbox
        self._url, self._tls, self._auth = url, tls, auth
        self._downlink: mqtt.Client | None = None
        self._path_up = not offline_ok
        self._path_lock = threading.Lock()
        self._downlink_path = not offline_ok  # the data path state the downlink last followed
        self.uplink = DurableUplink(url, unit_id, str(state / "outbox"), tls=tls, auth=auth,
                                    connect_now=not offline_ok, data_path=not offline_ok)
        self.topic = uplink_topic(unit_id, self.uplink.boot)
        self.audit = AuditLog(state / "audit.log", audit_retention_s)
        self._purposes: dict[int, int] = {}  # sid -> purpose, of this boot's sessions
        self._tests: set[int] = set()  # this boot's test-call sessions
        self._ended: dict[tuple[int, int], int] = {}  # (boot, sid) -> end, monotonic s, for the retention
        if not offline_ok:
            try:
                self._open_downlink()
            except BaseException:
                self.uplink.close()
                raise
        self._timer = threading.Thread(target=self._run_timer, name="tcu-timer", daemon=True)
        self._timer.start()

    def __enter__(self) -> LiveUnit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_downlink(self) -> None:
        self._downlink = open_client(self._url, "tcu-%s-down" % self.unit_id, setup=self._setup_downlink,
                                     tls=self._tls, persistent=True, auth=self._auth)

    def set_data_path(self, up: bool, radio: dict[int, Any] | None = None) -> None:
        """The modem's data path came or went (emulator/modem_link.py): the uplink follows at
        once; the downlink is stopped while there is none (no futile reconnects) and resumed
        (or first opened) when it returns. Called from the modem thread."""
        self.uplink.set_data_path(up, radio)
        self._path_up = up
        if (up != self._downlink_path or (up and self._downlink is None)) and not self._path_lock.locked():
            # paho may block for seconds: never on the modem thread (a later call catches up)
            threading.Thread(target=self._follow_path, name="tcu-downlink-path", daemon=True).start()

    def _follow_path(self) -> None:
        if not self._path_lock.acquire(blocking=False):
            return
        try:
            while True:  # until the downlink matches the latest state
                up = self._path_up
                self._apply_path(up, self._downlink)
                self._downlink_path = up
                if self._path_up == up:
                    return
        finally:
            self._path_lock.release()

    def _apply_path(self, up: bool, down: mqtt.Client | None) -> None:
        try:
            if not up and down is not None:
                down.disconnect()
                down.loop_stop()
            elif up and down is None:
                self._open_downlink()
            elif up and down is not None and not down.is_connected():
                down.reconnect()
                down.loop_start()
        except (OSError, LinkError) as err:  # the next change of the path tries again
            self.uplink.stats.last_error = "downlink: %s" % err

    def _setup_downlink(self, client: mqtt.Client) -> None:
        topic = downlink_topic(self.unit_id)

        def on_connect(c: mqtt.Client, *args: object) -> None:
            c.subscribe(topic, qos=1)  # again after every reconnect

        def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            self.handle(Downlink(bytes(message.payload)))

        client.on_connect = on_connect
        client.on_message = on_message

    def now_ms(self) -> int:
        """The firmware's monotonic clock."""
        return self.clocks.monotonic_ms()

    def wall_s(self) -> int:
        """The unit's wall time (what it stamps messages and audit records with)."""
        return self.unit.clock.now(self.now_ms()) // 1000

    def handle(self, event: Any) -> list[Any]:
        """Feed one event to the firmware and carry out its actions; returns them."""
        if isinstance(event, TriggerOn) and event.kind in MSD_TRIGGERS:
            from tcu.emulator.msd import warm_up

            warm_up()  # asn1tools (~20 MB) loads for an emergency call only, compiling while the fix comes
        with self.lock:
            wall = self.clocks.heard_gnss(event.fix.time_ms) if isinstance(event, FixEvent) else self.clocks.reading()
            actions = self.unit.handle(event, self.now_ms(), wall)
            for action in actions:
                self._apply(action)
        self._timer_changed.set()
        return actions

    def _apply(self, action: Any) -> None:
        if isinstance(action, PersistCounter):
            self.counter.save(action.counter)
        elif isinstance(action, Publish):
            if not action.located:
                self._note_session(action.payload)
            elif self.e2e_key is not None:
                sealed = seal_uplink(action.payload, self.e2e_key, self.topic)
                action = Publish(sealed, action.priority, action.sid, action.seq, action.located)
            self.uplink.send(action)
            if self.on_publish is not None:
                self.on_publish(action)
            if action.located:  # a disclosure: on the record before anything else happens
                purpose = PURPOSE_NAMES.get(self._purposes.get(action.sid, 0), "unknown")
                self.audit.append(self.wall_s(), self.uplink.boot, action.seq, action.sid, purpose,
                                  action.payload, action.sid in self._tests)
        elif isinstance(action, Indicator) and self.on_indicator is not None:
            self.on_indicator(action.on)

    def session_msd(self, sid: int) -> bytes | None:
        """The eCall MSD an active crash or SOS session last sent (for the SMS fallback): the same
        bytes as its session start carried, or None (no such session, or no fix yet)."""
        with self.lock:
            return self.unit.session_msd(sid)

    def _note_session(self, payload: bytes) -> None:
        msg = messages.decode(payload)
        if msg.type == messages.T_SESSION_START and msg.purpose is not None:
            self._purposes[msg.sid] = msg.purpose
            if msg.test:
                self._tests.add(msg.sid)
        elif msg.type == messages.T_SESSION_END:
            # The retention runs on the monotonic clock (this boot's sessions are all _ended holds):
            # a step of the wall clock a day ahead must not drop records of a session just ended.
            self._ended[(self.uplink.boot, msg.sid)] = self.now_ms() // 1000
            self.audit.prune(self.now_ms() // 1000, self._ended)

    def _run_timer(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                due = self.unit.next_timer()
            wait = None if due is None else max(0.0, (due - self.now_ms()) / 1000)
            self._timer_changed.clear()
            if self._timer_changed.wait(wait if wait is None else min(wait, 1.0)) or self._stop.is_set():
                continue
            if due is not None and self.now_ms() >= due:
                self.handle(Tick())

    def close(self, drain_s: float = 5.0) -> None:
        """End every session (sending its end), deliver what can be delivered, stop."""
        if self._stop.is_set():
            return
        self.handle(Shutdown())
        self._stop.set()
        self._timer_changed.set()
        self._timer.join(5)
        if self._downlink is not None:
            self._downlink.disconnect()
            self._downlink.loop_stop()
        try:
            self.uplink.drain(drain_s)
        finally:
            self.uplink.close()
