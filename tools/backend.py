"""`tcu backend`: the reference backend. Subscribes to every unit's uplink, decodes each
message strictly and prints it; a payload that does not decode is reported, never fatal."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from tcu.emulator.uplink import ALL_UPLINKS, open_client, unit_of_topic
from tcu.firmware.errors import ProtocolError
from tcu.tools.view import UplinkView

Record = dict[str, Any]


class Backend:
    """Subscribes at QoS 1 and keeps every decoded uplink in `records`."""

    def __init__(self, url: str, on_record: Callable[[Record], None] | None = None,
                 client_id: str = "tcu-backend") -> None:
        self.url = url
        self.records: list[Record] = []
        self.rejected: list[str] = []
        self._on_record = on_record
        self._view = UplinkView()
        self._cond = threading.Condition()
        self._subscribed = threading.Event()

        def setup(client: mqtt.Client) -> None:
            client.on_message = self._on_message
            client.on_subscribe = lambda *a: self._subscribed.set()

        self._client = open_client(url, client_id, setup=setup)
        self._client.subscribe(ALL_UPLINKS, qos=1)
        self._subscribed.wait(5)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            record = self._view.describe(message.payload, unit_of_topic(message.topic))
        except ProtocolError as err:
            with self._cond:
                self.rejected.append("%s: %s" % (message.topic, err))
            return
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()
        if self._on_record is not None:
            self._on_record(record)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> bool:
        """True once `count` records arrived, False if the timeout passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.records) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def format_record(record: Record) -> str:
    """One readable line for an uplink."""
    head = "%s %-13s seq %-4d session %d %s" % (
        record.get("time") or "?", record["type"], record["seq"], record["session"], record.get("purpose") or "")
    if "lat" in record:
        head += "  %.7f, %.7f" % (record["lat"], record["lon"])
        if "speed" in record:
            head += "  %.0f km/h %d deg" % (record["speed"] * 3.6, record.get("course", 0))
    elif record["type"] == "session_end":
        head += "  (%s)" % record["reason"]
    return head + "  [%d B]" % record["bytes"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("backend", help="subscribe to units' uplinks, decode and print them")
    parser.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    parser.add_argument("--json", action="store_true", help="one JSON object per uplink")
    parser.add_argument("--count", type=int, default=0, help="exit after this many uplinks (0: run until Ctrl-C)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def show(record: Record) -> None:
        print(json.dumps(record) if args.json else format_record(record), flush=True)

    backend = Backend(args.broker, on_record=show)
    print("backend: subscribed to %s on %s" % (ALL_UPLINKS, args.broker), file=sys.stderr, flush=True)
    try:
        while not args.count or len(backend.records) < args.count:
            backend.wait_for(args.count or len(backend.records) + 1, timeout_s=1.0)
    finally:
        backend.close()
        for line in backend.rejected:
            print("backend: rejected %s" % line, file=sys.stderr)
    return 0
