"""The unit's uplink over MQTT, durable: every uplink goes into the outbox first and leaves
it only when the broker acknowledged it with a success PUBACK.

One thread owns the connection (paho, through mqtt_session's external loop, on a select a
producer can wake): it group-commits what the producer staged (one fdatasync per batch),
publishes durable records in order with up to `window` in flight, never more than the
broker's Receive Maximum and never a PUBLISH over its Maximum Packet Size (mqtt_limits),
forgets a record on its PUBACK (a refusal, reason >= 0x80, is not delivery), and purges
delivered positions from the file. When the link drops (the broker died, the keep-alive
found a dead link) it reconnects with exponential backoff and full jitter, capped at
`max_backoff_s` so a backlog starts draining within about a second of the broker coming
back, and resends everything still pending, oldest first: what was in flight goes again in
the same session with its packet id and DUP set. MQTT 5 first, 3.1.1 for brokers that refuse
it or do not answer it. A broker that takes QoS 0 only stops the link with one line
(LinkFatal). `set_data_path(False)` holds the link down (a modem that lost registration).
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

from tcu.emulator.connect_errors import no_connack
from tcu.emulator.credentials import Credentials
from tcu.emulator.mqtt_limits import (
    MQTT5,
    MQTT311,
    PACKET_TOO_LARGE,
    QOS_NOT_SUPPORTED,
    RETAIN_NOT_SUPPORTED,
    UNLIMITED_PACKET,
    Limits,
    publish_size,
    reason_text,
)
from tcu.emulator.mqtt_session import Session
from tcu.emulator.outbox import Key, Outbox, next_boot
from tcu.emulator.uplink import (
    UNSUPPORTED_PROTOCOL,
    TlsOptions,
    answer_wait,
    parse_broker_url,
    status_payload,
    status_topic,
    uplink_topic,
)
from tcu.firmware.errors import LinkError


class LinkFatal(LinkError):
    """The broker's limits rule this unit out (QoS 0 only): retrying cannot help."""


class LinkRefused(LinkError):
    """A CONNACK refusal (bad credentials, not authorized): retried, but slowly."""

IDLE_WAIT_S = 0.25
STABLE_S = 10.0  # a connection that lasted this long resets the backoff
REFUSED_BACKOFF_S = 30.0  # the cap after a CONNACK refusal: a fleet with a wrong password stays quiet


@dataclass
class LinkStats:
    published: int = 0  # PUBLISH packets sent, resends included
    backlog: int = 0  # of which sent again: left by an earlier run, or sent before a reconnect
    acked: int = 0
    refused: int = 0  # negative PUBACKs (MQTT 5 reason >= 0x80): not delivery
    connects: int = 0
    failed_connects: int = 0
    last_error: str = ""
    too_large: int = 0  # uplinks over the broker's Maximum Packet Size: never sent there
    limits: str = ""  # what the broker announced in its latest CONNACK
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
                 protocol: int | None = None, auth: Credentials | None = None, data_path: bool = True) -> None:
        self.broker = parse_broker_url(url, auth)
        self.auth = self.broker.auth
        self.unit_id = unit_id
        self.client_id = "tcu-%s" % unit_id
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
        # MQTT versions to try (5, 4 = 3.1.1); the first that works is kept
        self._versions = [protocol] if protocol else [MQTT5, MQTT311]
        self._sessions: dict[int, Session] = {}
        self._inflight: dict[int, Key] = {}  # packet id -> record, across reconnects (the session's)
        self._status_mids: set[int] = set()
        self._retain = True  # the status message and will; off for a broker without retain
        self._too_large: dict[Key, int] = {}
        self._limit_problem = ""
        self._learnt_max = UNLIMITED_PACKET  # from a PUBACK 0x95 of a broker that announced no limit
        self._fresh_session = False
        self._reported_limit = UNLIMITED_PACKET
        self._fatal: LinkError | None = None
        self._problems: list[str] = []  # each broker limit the link hit, once
        self._problem_sink: Any = None
        self._problem_lock = threading.Lock()  # not _lock: problems are found while holding it
        self._path_up = data_path  # False: a modem not registered yet; the first connect waits for it
        self.radio: dict[int, Any] | None = None  # the modem's state, in the status message
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sleeping = False
        self._connected = False  # True while _serve runs: the link thread commits
        self._closing = False
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
                if self._fatal is not None:
                    raise self._fatal
                if self._too_large and len(self._too_large) + len(self._refused) >= len(self.outbox):
                    raise LinkError("%s; %d such uplinks of up to %d bytes" % (
                        self._limit_problem, len(self._too_large), max(self._too_large.values())))
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

    def set_data_path(self, up: bool, radio: dict[int, Any] | None = None) -> None:
        """The data path (a modem's registration and packet data) came up or went down: while
        it is down the link neither connects nor holds a connection; uplinks stay queued.
        radio: the modem's registration, operator, RAT and signal, for the status message.
        No lock: the link thread holds it across an fdatasync, and the modem thread that
        calls this must not wait on a disk."""
        if radio is not None:
            self.radio = radio
        if self._path_up != up:
            self._path_up = up
            self._sleeping = False
            self._wake()

    def report_problems_to(self, sink: Any) -> None:
        """sink(line) once per broker limit the link runs into (those already hit at once):
        `tcu run` logs them (a replay raises them from drain()). sink must not call the uplink."""
        with self._problem_lock:
            self._problem_sink = sink
            problems = list(self._problems)
        for text in problems:
            sink(text)

    def _problem(self, text: str) -> None:
        with self._problem_lock:
            if text in self._problems:
                return
            self._problems.append(text)
            sink = self._problem_sink
        if sink is not None:
            sink(text)

    @property
    def fatal(self) -> LinkError | None:
        """Why the link stopped for good (a broker limit the unit cannot work with), or None."""
        return self._fatal

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
            if not self._path_up:
                self._first.set()  # started out of coverage: the outbox holds everything
                self._pause(IDLE_WAIT_S)
                continue
            try:
                session, limits = self._handshake()
            except LinkFatal as err:
                self._stop_for_good(err)
                return
            except LinkError as err:
                self.stats.failed_connects += 1
                self.stats.last_error = str(err)
                if not self._first.is_set():
                    self._first_error = err
                    self._first.set()
                attempt += 1
                # refused by CONNACK (credentials, ACL): only the broker's operator can change that
                self._backoff(attempt, REFUSED_BACKOFF_S if isinstance(err, LinkRefused) else self.max_backoff_s)
                continue
            try:
                self._check_limits(limits)
            except LinkFatal as err:
                session.disconnect()
                self._stop_for_good(err)
                return
            self._first.set()
            began = time.monotonic()
            try:
                self._serve(session, limits)
            except LinkError as err:
                self.stats.last_error = str(err)
            finally:
                with self._cond:
                    self._cond.notify_all()
            # a link that keeps dropping right after connecting backs off like one that fails
            attempt = attempt + 1 if time.monotonic() - began < STABLE_S else 1
            self._backoff(attempt)

    def _stop_for_good(self, err: LinkFatal) -> None:
        self.stats.last_error = str(err)
        self._fatal = err
        self._problem(str(err))
        if not self._first.is_set():
            self._first_error = err
        with self._cond:
            self._cond.notify_all()

    def _backoff(self, attempt: int, max_s: float | None = None) -> None:
        """Exponential, capped, with full jitter: a fleet does not reconnect in step."""
        cap = min(max_s or self.max_backoff_s, self.base_backoff_s * 2 ** min(attempt - 1, 20))
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

    def _handshake(self) -> tuple[Session, Limits]:
        while True:
            version = self._versions[0]
            session = self._sessions.get(version)
            if self._fresh_session:  # a clean start: what was in flight goes again as new messages
                session, self._fresh_session = None, False
                self._inflight.clear()
                self._status_mids.clear()
            if session is None:
                session = self._sessions[version] = Session(self.broker, self.client_id, version, self.tls,
                                                            self.keepalive_s, self.connect_timeout_s, self.auth)
            session.will(status_topic(self.unit_id), status_payload(False), self._retain)
            answer = session.connect(answer_wait(version, self._versions, self.connect_timeout_s),
                                     lambda: self._closing or not self._path_up)
            reason = None if answer is None else answer[0]
            if not self._path_up:  # the data path went meanwhile: no CONNACK is not the broker's answer
                session.close()
                raise LinkError("the data path went away during the handshake")
            if reason == 0 and answer is not None:
                del self._versions[1:]
                return session, answer[1]
            session.close()
            if reason == QOS_NOT_SUPPORTED:  # the will's QoS 1: a broker with Maximum QoS 0
                raise LinkFatal("broker %s accepts QoS 0 only (CONNACK %s): the unit's uplinks need QoS 1 "
                                "(acknowledged delivery), so it sends nothing there" % (
                                    self.broker.url, reason_text("CONNACK", reason, version)))
            if reason == RETAIN_NOT_SUPPORTED and self._retain:
                self._retain = False  # the will and the status message go unretained
                continue
            if len(self._versions) > 1 and not self._closing and (reason is None or reason in UNSUPPORTED_PROTOCOL):
                self._versions.pop(0)
                continue
            if reason is None:  # silence is no refusal: likely not an MQTT port, or a TLS one
                raise LinkError(no_connack(self.broker.url, self.broker.tls, False, self.connect_timeout_s))
            raise LinkRefused("broker %s refused the connection: CONNACK %s" % (
                self.broker.url, reason_text("CONNACK", reason, version)))

    def _check_limits(self, limits: Limits) -> None:
        """What the unit cannot work with: a broker that takes only QoS 0 (no acknowledgement,
        so no delivery the outbox could trust). Fatal: it stops the link with one line."""
        self.stats.limits = limits.describe()
        if limits.max_qos < 1:
            raise LinkFatal("broker %s accepts QoS 0 only (CONNACK Maximum QoS 0): the unit's uplinks need "
                            "QoS 1 (acknowledged delivery), so it sends nothing there" % self.broker.url)
        if limits.assigned_client_id:  # MQTT 5: the broker named the session; reconnects resume it
            self.client_id = limits.assigned_client_id
            for session in self._sessions.values():
                session.client._client_id = limits.assigned_client_id.encode()

    def _serve(self, session: Session, limits: Limits) -> None:
        """One connection: publish and account until it drops (LinkError) or the uplink closes."""
        self.stats.connects += 1
        self.stats.connected_at, self.stats.first_ack_at = time.monotonic(), None
        window = max(1, min(self.window, limits.receive_max))
        if session.in_flight() < window:
            self._status_mids.add(session.publish(status_topic(self.unit_id), status_payload(True, self.radio),
                                                  self._retain))
        with self._lock:  # a refused record is not sent again by this link (it stays for the next start)
            self._connected = True
            sent = set(self._inflight.values())
            queue = deque(r.key for r in self.outbox.pending()
                          if r.durable and r.key not in sent and r.key not in self._refused)
            backlog = {k for k in queue if k in self._sent_before} | sent
            self.stats.backlog += len(sent)  # paho resends these itself, DUP set
        tokens, last_refill = 1.0, time.monotonic()
        topics: dict[int, str] = {}
        while not self._closing and self._path_up:
            with self._cond:
                progress = self._account(session.acks)
                queue.extend(r.key for r in self.outbox.commit())
                if self.outbox.purge_due():
                    self.outbox.purge()
                if self.max_rate:
                    now = time.monotonic()
                    tokens = min(float(window), tokens + (now - last_refill) * self.max_rate)
                    last_refill = now
                sent_now = 0
                while queue and session.in_flight() < window and (not self.max_rate or tokens >= 1):
                    key = queue.popleft()
                    rec = self.outbox.get(key)
                    if rec is None:
                        continue  # delivered meanwhile, or evicted
                    topic = topics.get(rec.boot) or topics.setdefault(rec.boot, uplink_topic(self.unit_id, rec.boot))
                    size = publish_size(session.version, topic.encode(), len(rec.payload))
                    if size > min(limits.max_packet_size, self._learnt_max):
                        self._too_large_for(key, size, min(limits.max_packet_size, self._learnt_max))
                        continue
                    self._inflight[session.publish(topic, rec.payload)] = key
                    self._sent_before.add(key)
                    sent_now += 1
                    tokens -= 1
                    if key in backlog:
                        self.stats.backlog += 1
                self.stats.published += sent_now
                if progress or self._too_large:
                    self._cond.notify_all()
                self._sleeping = not queue and not session.in_flight()
            wait = IDLE_WAIT_S
            if queue and self.max_rate and tokens < 1:
                wait = min(wait, (1 - tokens) / self.max_rate)
            if session.poll(wait, self._wake_r):
                self._drain_wake()
            if session.lost is not None:
                with self._cond:
                    self._sleeping = self._connected = False
                    self._account(session.acks)
                    self.outbox.commit()
                raise LinkError(session.lost)
        with self._lock:
            self._connected = False
        if not self._path_up:
            session.close()  # the radio is gone: nothing to say goodbye over
            return
        self._goodbye(session)

    def _too_large_for(self, key: Key, size: int, limit: int) -> None:
        """An uplink that can never fit this broker: kept in the outbox (a broker with a larger
        limit gets it), never sent here, reported once."""
        if key not in self._too_large:
            self.stats.too_large += 1
            self._too_large[key] = size
            how = ("announces Maximum Packet Size %d bytes" % limit if limit < self._learnt_max
                   else "refused a PUBLISH of %d bytes as too large (PUBACK 0x95)" % (limit + 1))
            self.stats.last_error = ("broker %s %s: an uplink of %d bytes can never be sent to it "
                                     "(kept in the outbox)" % (self.broker.url, how, size))
            self._limit_problem = self.stats.last_error
            if len(self._too_large) == 1 or limit < self._reported_limit:
                self._reported_limit = limit
                self._problem(self.stats.last_error + "; more are counted (tcu status), not logged")

    def _learn_size_limit(self, key: Key) -> None:
        """A PUBLISH refused as too large: no larger one is sent to this broker again, and the
        session restarts clean (Mosquitto drops the connection after the refusal, and a kept
        session would make paho resend every larger one still in flight, one connection each)."""
        rec = self.outbox.get(key)
        if rec is None:
            return
        size = publish_size(self._versions[0], uplink_topic(self.unit_id, rec.boot).encode(), len(rec.payload))
        self._learnt_max = min(self._learnt_max, size - 1)
        self._fresh_session = True

    def _account(self, acks: list[tuple[int, int]]) -> bool:
        """Apply the PUBACKs received: a success forgets the record, a refusal keeps it."""
        if not acks:
            return False
        todo = acks[:]
        del acks[:]
        done: list[Key] = []
        for mid, reason in todo:
            key = self._inflight.pop(mid, None)
            if key is None:
                self._status_mids.discard(mid)
                continue
            if reason >= 0x80:
                self.stats.refused += 1
                self._refused[key] = "PUBACK %s" % reason_text("PUBACK", reason)
                if reason == PACKET_TOO_LARGE:  # what Mosquitto 2.0 says for message_size_limit
                    self._learn_size_limit(key)
            else:
                done.append(key)
                self._refused.pop(key, None)
                self._sent_before.discard(key)
        if done:
            if self.stats.first_ack_at is None:
                self.stats.first_ack_at = time.monotonic()
            self.stats.acked += self.outbox.delivered(done)
        return True

    def _goodbye(self, session: Session) -> None:
        """A clean stop: collect outstanding PUBACKs briefly, say offline, disconnect."""
        deadline = time.monotonic() + 1.0
        while self._inflight and session.lost is None and time.monotonic() < deadline:
            session.poll(0.05, None)
            with self._lock:
                self._account(session.acks)
        if session.lost is None:
            session.publish(status_topic(self.unit_id), status_payload(False), self._retain)
            session.disconnect()
        session.close()
