"""The unit's uplink over MQTT, durable: every uplink goes into the outbox first and leaves
it only when the broker acknowledged it with a success PUBACK.

One thread owns the connection (our own small MQTT codec, mqtt_wire, on a select loop a
producer can wake): it group-commits what the producer staged (one fdatasync per batch),
publishes durable records in order with up to `window` in flight (a burst in one send()),
forgets a record on its PUBACK (a refusal, reason >= 0x80, is not delivery), and purges
delivered positions from the file. When the link drops (the broker died, the keep-alive
found a dead link) it reconnects with exponential backoff and full jitter, capped at
`max_backoff_s` so a backlog starts draining within about a second of the broker coming
back, and resends everything still pending, oldest first. MQTT 5 first, 3.1.1 for brokers
that refuse it or do not answer it; the broker session is kept (clean start off).
"""

from __future__ import annotations

import os
import random
import select
import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tcu.emulator import mqtt_wire as wire
from tcu.emulator.outbox import Key, Outbox, next_boot
from tcu.emulator.uplink import (
    SESSION_EXPIRY_S,
    UNSUPPORTED_PROTOCOL,
    TlsOptions,
    answer_wait,
    parse_broker_url,
    status_payload,
    status_topic,
    uplink_topic,
)
from tcu.firmware.errors import LinkError

IDLE_WAIT_S = 0.25
STABLE_S = 10.0  # a connection that lasted this long resets the backoff


@dataclass
class LinkStats:
    published: int = 0  # PUBLISH packets sent, resends included
    backlog: int = 0  # of which sent again: left by an earlier run, or sent before a reconnect
    acked: int = 0
    refused: int = 0  # negative PUBACKs (MQTT 5 reason >= 0x80): not delivery
    connects: int = 0
    failed_connects: int = 0
    last_error: str = ""
    connected_at: float | None = None  # monotonic time of the latest CONNACK
    first_ack_at: float | None = None  # monotonic time of the first PUBACK after it


class DurableUplink:
    """Use as `with DurableUplink(url, unit_id, outbox_path) as up: up.send(publish)`.

    outbox_path None: a temporary outbox, removed on close (durable only while running).
    connect_now: the first connection must succeed (LinkError otherwise, like a CLI wants);
    False: start offline and keep trying in the background.
    """

    def __init__(self, url: str, unit_id: str, outbox_path: str | None = None, *,
                 tls: TlsOptions | None = None, connect_timeout_s: float = 5.0, keepalive_s: int = 5,
                 window: int = 20, max_records: int = 10_000, max_rate: float | None = None,
                 base_backoff_s: float = 0.1, max_backoff_s: float = 1.0, connect_now: bool = True,
                 protocol: int | None = None) -> None:
        self.broker = parse_broker_url(url)
        self.unit_id = unit_id
        self.tls = tls
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.window = window
        self.max_rate = max_rate
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = LinkStats()
        self._tmpdir = None if outbox_path else tempfile.mkdtemp(prefix="tcu-outbox-")
        path = outbox_path or os.path.join(self._tmpdir or "", "outbox")
        self.outbox = Outbox(path, max_records=max_records)
        self.outbox.purge()  # what a killed run delivered but did not purge leaves the file now
        self.boot = next_boot(path, self.outbox.max_boot())
        # MQTT versions to try (wire.MQTT5, wire.MQTT311); the first that works is kept
        self._versions = [protocol] if protocol else [wire.MQTT5, wire.MQTT311]
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sleeping = False
        self._connected = False  # True while _serve runs: the link thread commits
        self._closing = False
        self._acks: list[tuple[int, int]] = []
        self._refused: dict[Key, str] = {}
        # pending records that may have been sent already: left by an earlier run, or sent
        # on an earlier connection (what stats.backlog counts)
        self._sent_before: set[Key] = {r.key for r in self.outbox.pending()}
        self._first = threading.Event()
        self._first_error: LinkError | None = None
        self._thread = threading.Thread(target=self._run, name="tcu-link", daemon=True)
        self._thread.start()
        self._first.wait()
        if connect_now and self._first_error is not None:
            self.close()
            raise self._first_error

    def __enter__(self) -> DurableUplink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """The link is up (CONNACK received, not yet lost)."""
        return self._connected

    # -- the producer's side -----------------------------------------------------------
    def send(self, action: Any) -> None:
        """Stage a firmware Publish (payload, priority, seq, located) in the outbox under
        this boot; the link thread commits it and publishes it."""
        with self._lock:
            self.outbox.put(self.boot, action.seq, action.priority, action.located, action.payload)
            if not self._connected:
                self.outbox.commit()  # offline, nobody would group-commit it soon: now
            elif self._sleeping:
                self._sleeping = False
                self._wake()

    def drain(self, timeout_s: float = 30.0) -> None:
        """Block until the broker acknowledged every uplink; LinkError if it does not."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._sleeping:
                self._sleeping = False
                self._wake()
            while len(self.outbox):
                if self._refused and len(self._refused) >= len(self.outbox):
                    raise LinkError("broker %s refused %d uplinks: %s" % (
                        self.broker.url, len(self._refused), next(iter(self._refused.values()))))
                left = deadline - time.monotonic()
                if left <= 0 and self._refused:
                    raise LinkError("broker %s refused %d uplinks (%s); %d still pending after %.0f s" % (
                        self.broker.url, len(self._refused), next(iter(self._refused.values())),
                        len(self.outbox), timeout_s))
                if left <= 0:
                    why = "; last error: %s" % self.stats.last_error if self.stats.last_error else ""
                    raise LinkError("broker %s acknowledged %d uplinks, %d still pending after %.0f s%s" % (
                        self.broker.url, self.stats.acked, len(self.outbox), timeout_s, why))
                self._cond.wait(min(left, IDLE_WAIT_S))

    def close(self) -> None:
        """Stop the link (publishing the offline status), then close the outbox: what is
        still pending stays in its file for the next start."""
        if self._thread.is_alive():
            with self._lock:
                self._closing = True
                self._wake()
            self._thread.join(10)
        with self._lock:
            if self.outbox is not None:
                self.outbox.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except (BlockingIOError, OSError):
            pass

    # -- the link thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._connect_and_serve()
        finally:
            self._first.set()  # never leave the constructor waiting

    def _connect_and_serve(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                client = self._handshake()
            except LinkError as err:
                self.stats.failed_connects += 1
                self.stats.last_error = str(err)
                if not self._first.is_set():
                    self._first_error = err
                    self._first.set()
                attempt += 1
                self._backoff(attempt)
                continue
            self._first.set()
            began = time.monotonic()
            try:
                self._serve(client)
            except LinkError as err:
                self.stats.last_error = str(err)
            finally:
                with self._cond:
                    self._cond.notify_all()
            # a link that keeps dropping right after connecting backs off like one that fails
            attempt = attempt + 1 if time.monotonic() - began < STABLE_S else 1
            self._backoff(attempt)

    def _backoff(self, attempt: int) -> None:
        """Exponential, capped, with full jitter: a fleet does not reconnect in step."""
        cap = min(self.max_backoff_s, self.base_backoff_s * 2 ** min(attempt - 1, 20))
        self._pause(random.uniform(0, cap))

    def _pause(self, seconds: float) -> None:
        if not self._closing:
            select.select([self._wake_r], [], [], seconds)
            self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _handshake(self) -> wire.Connection:
        while True:
            version = self._versions[0]
            conn = wire.Connection(self.broker, self.tls, self.connect_timeout_s, self.keepalive_s)
            wait_s = answer_wait(version, self._versions, self.connect_timeout_s)
            try:  # a TLS 1.3 broker refuses a client certificate after the handshake: here
                conn.send(wire.encode_connect(version, "tcu-%s" % self.unit_id, self.keepalive_s, False,
                                              SESSION_EXPIRY_S, status_topic(self.unit_id), status_payload(False)))
                reason = self._await_connack(conn, version, wait_s)
            except LinkError as err:
                conn.close()
                raise LinkError("broker %s refused the connection: %s" % (self.broker.url, err)) from None
            if reason == 0:
                del self._versions[1:]
                return conn
            conn.close()
            if len(self._versions) > 1 and not self._closing and (reason is None or reason in UNSUPPORTED_PROTOCOL):
                self._versions.pop(0)
                continue
            why = ("no answer to CONNECT within %.0f s" % self.connect_timeout_s if reason is None
                   else "CONNACK reason %d (0x%02x)" % (reason, reason))
            raise LinkError("broker %s refused the connection: %s" % (self.broker.url, why))

    def _await_connack(self, conn: wire.Connection, version: int, wait_s: float) -> int | None:
        """The CONNACK's reason code, or None when none came within wait_s."""
        deadline = time.monotonic() + wait_s
        while not self._closing:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for kind, _, body in self._read(conn, min(left, IDLE_WAIT_S)):
                if kind == wire.CONNACK:
                    return wire.connack_reason(version, body)
        return None

    def _read(self, conn: wire.Connection, timeout: float) -> list[tuple[int, int, bytes]]:
        """Wait up to timeout for the broker or a wake-up; the packets that arrived."""
        if conn.pending():
            timeout = 0.0
        fd = conn.fileno()
        readable, _, _ = select.select([fd, self._wake_r], [], [], max(timeout, 0.0))
        if self._wake_r in readable:
            self._drain_wake()
        if fd in readable or conn.pending():
            return conn.receive()
        return []

    def _serve(self, conn: wire.Connection) -> None:
        """One connection: publish and account until it drops (LinkError) or the uplink closes."""
        self.stats.connects += 1
        self.stats.connected_at, self.stats.first_ack_at = time.monotonic(), None
        version = self._versions[0]
        topics: dict[int, bytes] = {}
        inflight: dict[int, Key] = {}
        mids = _mids()
        conn.send(wire.encode_publish(version, status_topic(self.unit_id).encode(), 65535, status_payload(True),
                                       retain=True))
        with self._lock:  # refused records are tried again once per connection
            self._connected = True
            queue = deque(r.key for r in self.outbox.pending() if r.durable)
            backlog = {k for k in queue if k in self._sent_before}
        tokens, last_refill = 1.0, time.monotonic()
        while not self._closing:
            burst: list[bytes] = []
            with self._cond:
                progress = self._account(inflight)
                queue.extend(r.key for r in self.outbox.commit())
                if self.outbox.purge_due():
                    self.outbox.purge()
                if self.max_rate:
                    now = time.monotonic()
                    tokens = min(float(self.window), tokens + (now - last_refill) * self.max_rate)
                    last_refill = now
                while queue and len(inflight) < self.window and (not self.max_rate or tokens >= 1):
                    key = queue.popleft()
                    rec = self.outbox.get(key)
                    if rec is None:
                        continue  # delivered meanwhile, or evicted
                    topic = topics.get(rec.boot)
                    if topic is None:
                        topic = topics[rec.boot] = uplink_topic(self.unit_id, rec.boot).encode()
                    mid = next(mids)
                    while mid in inflight:
                        mid = next(mids)
                    burst.append(wire.encode_publish(version, topic, mid, rec.payload))
                    inflight[mid] = key
                    self._sent_before.add(key)
                    tokens -= 1
                    if key in backlog:
                        self.stats.backlog += 1
                self.stats.published += len(burst)
                if progress:
                    self._cond.notify_all()
                self._sleeping = not queue and not inflight
            if burst:
                conn.send(b"".join(burst))
            wait = IDLE_WAIT_S
            if queue and self.max_rate and tokens < 1:
                wait = min(wait, (1 - tokens) / self.max_rate)
            try:
                self._take(conn, version, self._read(conn, wait))
                conn.tick(time.monotonic())
            except LinkError:
                with self._cond:
                    self._sleeping = self._connected = False
                    self._account(inflight)
                    self.outbox.commit()
                raise
        with self._lock:
            self._connected = False
        self._goodbye(conn, version, inflight)

    def _take(self, conn: wire.Connection, version: int, packets: list[tuple[int, int, bytes]]) -> None:
        for kind, _, body in packets:
            if kind == wire.PUBACK:
                self._acks.append(wire.puback(version, body))
            elif kind == wire.DISCONNECT:
                raise LinkError("broker %s disconnected the unit (reason %d)" % (
                    self.broker.url, body[0] if body else 0))

    def _account(self, inflight: dict[int, Key]) -> bool:
        """Apply the PUBACKs received: a success forgets the record, a refusal keeps it."""
        if not self._acks:
            return False
        acks, self._acks = self._acks, []
        done: list[Key] = []
        for mid, reason in acks:
            key = inflight.pop(mid, None)
            if key is None:
                continue  # the status message
            if reason >= 0x80:
                self.stats.refused += 1
                self._refused[key] = "PUBACK reason 0x%02x%s" % (reason, " (Not authorized)" if reason == 0x87 else "")
            else:
                done.append(key)
                self._refused.pop(key, None)
                self._sent_before.discard(key)
        if done:
            if self.stats.first_ack_at is None:
                self.stats.first_ack_at = time.monotonic()
            self.stats.acked += self.outbox.delivered(done)
        return True

    def _goodbye(self, conn: wire.Connection, version: int, inflight: dict[int, Key]) -> None:
        """A clean stop: collect outstanding PUBACKs briefly, say offline, disconnect."""
        try:
            deadline = time.monotonic() + 1.0
            while inflight and time.monotonic() < deadline:
                self._take(conn, version, self._read(conn, 0.05))
                with self._lock:
                    self._account(inflight)
            conn.send(wire.encode_publish(version, status_topic(self.unit_id).encode(), 65535,
                                           status_payload(False), retain=True))
            conn.send(wire.DISCONNECT_PACKET)
        except LinkError:
            pass
        finally:
            conn.close()


def _mids() -> Any:
    """Packet ids 1..65534 round and round (65535 is the status message's)."""
    while True:
        yield from range(1, 65535)
