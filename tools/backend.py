"""`tcu backend`: the reference backend. Subscribes to every unit's uplinks at QoS 1 with a
persistent session (a backend that reconnects misses nothing the broker kept), decodes each
message strictly, deduplicates on (unit, boot, seq) and stores it (tools/store.py: SQLite,
or PostgreSQL); a payload that does not decode is reported, never fatal. A message is
acknowledged only once its row is committed, so a worker killed in between gets it again
(QoS 1) and the key makes the second insert a no-op: with `--share GROUP` several workers
split the uplinks through an MQTT 5 shared subscription and still store each exactly once.

A unit sends an uplink again when it cannot know that the broker got it (a PUBACK lost with
the link, a restart), so duplicates are normal: the store keeps one row per identity.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from tcu.emulator.credentials import Credentials
from tcu.emulator.crypto import is_sealed, load_e2e_key, open_uplink
from tcu.emulator.uplink import ALL_UPLINKS, TlsOptions, open_client, parse_uplink_topic, redact_url
from tcu.firmware.errors import ProtocolError, UsageError
from tcu.tools import seq_gaps
from tcu.tools.store import MIGRATIONS, open_store, store_errors
from tcu.tools.tls_options import add_tls_arguments, broker_auth, check_link
from tcu.tools.view import UplinkView, iso_utc

Record = dict[str, Any]

SCHEMA = MIGRATIONS["sqlite"][0][0]  # the uplinks table (version 1), for tests that build a store by hand
BATCH_S = 0.0  # the least time between two commits (a test slows the backend down with it)
BATCH_MAX = 500  # or as soon as this many wait


class Backend:
    """Subscribes at QoS 1; keeps every new uplink in `records` and in the store (`store`: a
    SQLite file, ':memory:' or a postgresql:// URL); counts `duplicates` it dropped.
    share: subscribe as a member of this MQTT 5 shared-subscription group."""

    def __init__(self, url: str | None, on_record: Callable[[Record], None] | None = None,
                 client_id: str = "tcu-backend", store: str = ":memory:", persistent: bool = True,
                 tls: TlsOptions | None = None, protocol: mqtt.MQTTProtocolVersion | None = None,
                 e2e_key: bytes | None = None, on_uplink: Callable[[str, int, bytes], None] | None = None,
                 auth: Credentials | None = None, limit: int = 0,
                 on_note: Callable[[str], None] | None = None, share: str | None = None) -> None:
        self.url = url
        self.e2e_key = e2e_key  # opens uplinks the units sealed end to end
        self.records: list[Record] = []
        self.rejected: list[str] = []
        self.received = 0  # messages, duplicates included
        self.duplicates = 0
        self.limit = limit  # stop at this many unique uplinks; later ones stay unacknowledged
        self.sealed_unopened = 0  # sealed end to end, and no --e2e-key
        self.gaps = seq_gaps.SeqGaps()
        self._lost = self._closing = False
        # The broker connection's number, raised when it is lost: an acknowledgement belongs to the
        # connection its message came by (MQTT 5 4.4), so one of an older connection is dropped,
        # never sent on the next, where its packet id names another message or a redelivery.
        self._link = 0
        self.stale_acks = 0  # acknowledgements dropped so: the broker redelivers those messages
        self._in_callback = 0
        self._on_note = on_note  # a live remark: a gap, a sealed uplink, the broker lost or back
        self._on_record = on_record
        self._on_uplink = on_uplink  # (unit, boot, payload) of each new uplink: the live table
        self._view = UplinkView()
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.worker = client_id
        self.store_name = store
        self.store = open_store(store, write=True)
        self._batch: list[tuple[Callable[[], object] | None, Record, bytes]] = []  # received, not yet committed
        self._stop_flush = threading.Event()
        self._pending = threading.Event()  # set by ingest: the flusher has something to commit
        self._flusher = threading.Thread(target=self._flush_every, name="tcu-backend-flush", daemon=True)
        self._flusher.start()
        self.topic = ALL_UPLINKS if share is None else "$share/%s/%s" % (share, ALL_UPLINKS)
        if share is not None:
            protocol = mqtt.MQTTv5

        def setup(client: mqtt.Client) -> None:
            # acknowledged once committed (see flush()); past the limit not at all: the next run gets them
            client.manual_ack_set(True)
            client.on_message = self._on_message
            client.on_subscribe = lambda *a: self._subscribed.set()
            # every connect: a broker that restarted without its sessions forgot the subscription
            client.on_connect = self._on_connect

        self._client: mqtt.Client | None = None  # url None: no broker, SMS copies only
        if url:
            self._client = open_client(url, client_id, setup=setup, tls=tls, persistent=persistent,
                                       protocol=protocol, auth=auth)
            self._client.on_disconnect = self._on_disconnect  # once connected: says so when the broker goes
            self._subscribed.wait(5)

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(self.topic, qos=1)
        if self._lost:
            self._lost = False
            self._note("the broker %s is back; subscribed again" % redact_url(self.url or ""))

    def _on_disconnect(self, client: mqtt.Client, *args: object) -> None:
        with self._cond:  # before paho reconnects, in this same thread; flush() acks under it
            self._link += 1
        if not self._closing and not self._lost:
            self._lost = True
            self._note("lost the broker %s; reconnecting (its session keeps what arrives meanwhile)"
                       % redact_url(self.url or ""))

    def _note(self, text: str) -> None:
        if self._on_note is not None:
            self._on_note(text)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            if self.limit and len(self.records) + len(self._batch) >= self.limit:
                return  # not acknowledged: redelivered to the next session with this client id
            self._in_callback += 1
        try:
            if not self._handle(client, message):
                client.ack(message.mid, message.qos)  # not stored by design (rejected, sealed): done with
        finally:
            with self._cond:  # close() waits for this: the last PUBACK goes out before DISCONNECT
                self._in_callback -= 1
                self._cond.notify_all()

    def _handle(self, client: mqtt.Client, message: mqtt.MQTTMessage) -> bool:
        """Decode one message; True when it waits in the batch (flush() acknowledges it)."""
        link = self._link  # this thread is the one that raises it: the connection message came by
        return self.ingest(message.topic, bytes(message.payload), lambda: self._ack(client, message, link))

    def _ack(self, client: mqtt.Client, message: mqtt.MQTTMessage, link: int) -> None:
        """Acknowledge on the connection the message came by, or not at all (flush() holds _cond)."""
        if link != self._link:
            self.stale_acks += 1  # the broker sends it again (a persistent session) or forgot it
            return
        client.ack(message.mid, message.qos)

    def ingest_sms(self, pdu: str) -> int:
        """An SMS copy (tools/backend_sms.py): its uplinks stored as if they came by MQTT,
        deduplicated with the MQTT copies on (unit, boot, seq); how many were new."""
        from tcu.emulator.uplink import uplink_topic
        from tcu.hal.sms_pdu import decode_pdu
        from tcu.protocol.sms import decode_envelope

        try:
            _, data = decode_pdu(pdu)
            unit, boot, uplinks = decode_envelope(data)
        except (UsageError, ProtocolError) as err:
            with self._cond:
                self.rejected.append("SMS %s...: %s" % (pdu[:24], err))
            return 0
        before = len(self.records)
        for payload in uplinks:
            self.ingest(uplink_topic(unit, boot), payload)
        self.flush()
        return len(self.records) - before

    def ingest(self, topic: str, payload: bytes, ack: Callable[[], object] | None = None) -> bool:
        """One uplink copy from topic (tcu/v1/UNIT/up/BOOT), decoded into the batch (stored once
        by flush(), which then calls ack); False when it is not to be stored (rejected, sealed)."""
        unit, boot = parse_uplink_topic(topic)
        boot = boot or 0
        try:
            if is_sealed(payload):  # sealed end to end by the unit: only this backend can open it
                if self.e2e_key is None:
                    with self._cond:
                        self.sealed_unopened += 1
                        first = self.sealed_unopened == 1
                    if first:
                        self._note("a sealed uplink from %s and no --e2e-key to open it: sealed uplinks are "
                                   "counted, not shown" % unit)
                    return False
                payload = open_uplink(payload, self.e2e_key, topic)
            record = self._view.describe(payload, "%s/%d" % (unit, boot))
        except ProtocolError as err:
            with self._cond:
                self.rejected.append("%s: %s" % (topic, err))
            return False
        record["unit"], record["boot"] = unit, boot
        if record["type"] in ("report", "batch") and record.get("time") is None:
            record["received"] = iso_utc(time.time())  # joined after the session's start
        with self._cond:
            self.received += 1
            self._batch.append((ack, record, payload))
            full = len(self._batch) >= BATCH_MAX
        self._pending.set()
        if full:
            self.flush()
        return True

    def _flush_every(self) -> None:
        """Group commit: an uplink arriving at an idle backend is committed at once, and the
        ones that arrive during a commit go together into the next (one fsync for all)."""
        while not self._stop_flush.is_set():
            if self._pending.wait(0.5):
                self._pending.clear()
                self.flush()
                if BATCH_S:
                    self._stop_flush.wait(BATCH_S)

    def flush(self) -> None:
        """Commit the uplinks received since the last flush in one transaction (one fsync for
        many rows), and only then acknowledge them: a worker killed before the commit gets
        every one of them again, and the key makes a second insert a no-op."""
        with self._cond:
            batch, self._batch = self._batch, []
            if not batch:
                return
            now = time.time()
            try:
                with store_errors(self.store_name):
                    new = self.store.insert_many([(r["unit"], r["boot"], r["seq"], r["type"], r["session"], payload,
                                                   now, self.worker) for _, r, payload in batch])
            except UsageError as err:  # not acknowledged: the broker sends them again after a reconnect
                self.rejected.append("%d uplinks not stored: %s" % (len(batch), err))
                return
            for ack, _, _ in batch:
                if ack is not None:
                    ack()
            fresh = [(record, payload) for (_, record, payload), stored in zip(batch, new, strict=True) if stored]
            self.duplicates += len(batch) - len(fresh)
            self.records.extend(record for record, _ in fresh)
            gaps = [(r["unit"], r["boot"], self.gaps.add(r["unit"], r["boot"], r["seq"])) for r, _ in fresh
                    if isinstance(r["seq"], int)]
            self._cond.notify_all()
        for unit, boot, gap in gaps:
            if gap is not None:
                self._note("unit %s boot %d: seq %s missing (%d uplinks lost or not yet delivered)" % (
                    unit, boot, seq_gaps.describe([gap]), seq_gaps.count([gap])))
        for record, payload in fresh:
            if self._on_record is not None:
                self._on_record(record)
            if self._on_uplink is not None:
                self._on_uplink(record["unit"], record["boot"], payload)

    def stored(self) -> int:
        """Rows in the store: unique uplinks."""
        with self._cond:
            return self.store.count()

    def stored_keys(self) -> list[tuple[str, int, int]]:
        with self._cond:
            return self.store.keys()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> bool:
        """True once `count` unique records arrived, False if the timeout passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.records) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self._closing = True
        with self._cond:
            self._cond.wait_for(lambda: self._in_callback == 0, timeout=5)
        self._stop_flush.set()
        self._pending.set()
        self._flusher.join(5)
        self.flush()  # what arrived is stored (and acknowledged) before the link goes
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        with self._cond:
            self.store.close()


def format_record(record: Record) -> str:
    """One readable line for an uplink: the unit first (two units both have a session 1); a
    report whose session start this backend never saw shows its receive time, marked '~'."""
    when = record.get("time") or ("~" + record["received"] if record.get("received") else "?")
    head = "%s%s %-13s seq %-4d session %d %s" % (
        "%s " % record["unit"] if record.get("unit") else "", when, record["type"], record["seq"],
        record["session"], record.get("purpose") or "")
    if "lat" in record:
        head += "  %.7f, %.7f" % (record["lat"], record["lon"])
        if "speed" in record:
            head += "  %.0f km/h %d deg" % (record["speed"] * 3.6, record.get("course", 0))
    elif record["type"] == "session_end":
        head += "  (%s)" % record["reason"]
    elif record["type"] == "session_start" and isinstance(record.get("msd"), dict):
        control = record["msd"].get("control", {})
        head += "  eCall MSD #%s, %s activation%s" % (
            record["msd"].get("messageIdentifier", "?"),
            "automatic" if control.get("automaticActivation") else "manual",
            ", test call" if control.get("testCall") else "")
    elif record["type"] == "command_response":
        head += "  command %d %s%s" % (record["counter"], record["result"],
                                       " (%s)" % record["reason"] if record.get("reason") else "")
    return head + "  [%d B]" % record["bytes"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("backend", help="subscribe to units' uplinks, decode and print them; "
                                   "`keygen` and `command` for signed commands; `sessions`, `export`, "
                                   "`plot` and `watch` for a store; `tap` for the wire")
    parser.add_argument("--broker", help="mqtt://HOST:PORT")
    parser.add_argument("--json", action="store_true", help="one JSON object per uplink")
    parser.add_argument("--count", type=int, default=0,
                        help="exit after this many unique uplinks (0: run until Ctrl-C)")
    parser.add_argument("--store", default=":memory:", metavar="STORE",
                        help="keep the deduplicated uplinks in this SQLite file or postgresql:// URL "
                             "(default: SQLite in memory); `tcu backend migrate` upgrades an older one")
    parser.add_argument("--share", metavar="GROUP",
                        help="share the uplinks with the other workers of GROUP (MQTT 5 shared subscription); "
                             "each worker needs its own --client-id, the same after a restart")
    parser.add_argument("--client-id", default="tcu-backend",
                        help="MQTT client id; its broker session persists, so a restart misses nothing")
    parser.add_argument("--live", action="store_true",
                        help="a live table of units and sessions instead of a line per uplink "
                             "(plain lines per session change when stdout is not a terminal)")
    parser.add_argument("--e2e-key", metavar="FILE", help="open uplinks sealed end to end with this key (hex)")
    parser.add_argument("--sms-log", metavar="FILE",
                        help="also take the SMS copies in this JSONL file (tcu modem-sim --sms-log), followed")
    add_tls_arguments(parser)
    parser.set_defaults(run=run)
    from tcu.tools import export_cmd, live, plot_cmd, store_cmd
    from tcu.tools.command_cmd import register_verbs

    register_verbs(parser)
    # command_cmd made the verbs' subparsers (argparse allows one set): add the store's tools to it
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    export_cmd.register_verbs(verbs)
    plot_cmd.register_verb(verbs)
    live.register_verb(verbs)
    from tcu.tools import msd_cmd

    msd_cmd.register_verb(verbs, export_cmd.SELECTOR_HELP)
    store_cmd.register_verb(verbs)
    from tcu.tools import backend_sms

    backend_sms.register_verb(verbs)
    from tcu.tools import tap_cmd

    tap_cmd.register_verb(verbs)
    verbs.metavar = "[keygen|command|sessions|export|plot|watch|msd|migrate|sms|tap]"


def run(args: argparse.Namespace) -> int:
    if not args.broker:
        raise UsageError("tcu backend needs --broker mqtt://HOST:PORT (or a verb: sessions, export, plot, watch...)")

    def show(record: Record) -> None:
        print(json.dumps(record) if args.json else format_record(record), flush=True)

    if args.share is not None and (not args.share or any(c in args.share for c in "/+#")):
        raise UsageError("--share %r: a group name is one topic level: no '/', '+' or '#'" % args.share)
    if args.share is not None and args.client_id == "tcu-backend":
        raise UsageError("--share needs --client-id NAME: one per worker, the same after a restart "
                         "(its persistent session keeps the uplinks in flight to it)")
    tls = check_link(args.broker, args)
    e2e_key = load_e2e_key(args.e2e_key) if args.e2e_key else None
    with contextlib.ExitStack() as stack:
        table = None
        if args.live:  # the table replaces the line per uplink
            from tcu.tools.live import LiveTable

            table = stack.enter_context(LiveTable())
        backend = Backend(args.broker, on_record=None if table else show, client_id=args.client_id,
                          store=args.store, tls=tls, e2e_key=e2e_key,
                          on_uplink=table.add if table else None, auth=broker_auth(args), limit=args.count,
                          on_note=lambda text: print("backend: %s" % text, file=sys.stderr, flush=True),
                          share=args.share)
        print("backend: subscribed to %s on %s" % (backend.topic, redact_url(args.broker)), file=sys.stderr,
              flush=True)
        if args.sms_log:
            from tcu.tools.backend_sms import follow

            follow(backend, args.sms_log)
        receive(backend, args.count)
    return 0


def receive(backend: Backend, count: int) -> None:
    """Until `count` unique uplinks arrived (0: until interrupted); then the backend closes."""
    try:
        while not count or len(backend.records) < count:
            backend.wait_for(count or len(backend.records) + 1, timeout_s=1.0)
    finally:
        if backend.duplicates:
            print("backend: %d duplicates dropped" % backend.duplicates, file=sys.stderr)
        if backend.sealed_unopened:
            print("backend: %d sealed uplinks not opened: give --e2e-key FILE" % backend.sealed_unopened,
                  file=sys.stderr)
        for (unit, boot), ranges in backend.gaps.all().items():
            print("backend: unit %s boot %d: %d uplinks not received by this backend (seq %s)" % (
                unit, boot, seq_gaps.count(ranges), seq_gaps.describe(ranges)), file=sys.stderr)
        backend.close()
        for line in backend.rejected:
            print("backend: rejected %s" % line, file=sys.stderr)
