"""`tcu backend tap`: a read-only wire tap, because `mosquitto_sub` prints binary.

For each message: the time, topic and size, its CBOR in diagnostic notation, and what it means
(tools/tap_view.py). Read-only by construction: a clean session (nothing kept on the broker
for the tap, nothing redelivered to it later), a QoS 0 subscription (the tap never
acknowledges anything: the broker sends it a copy, and every other subscriber, the backend's
persistent session or its shared-subscription workers, still gets its own), and no
`$share/` filter (that would take messages away from the backend's workers).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time

import paho.mqtt.client as mqtt

from tcu.emulator.crypto import load_e2e_key
from tcu.emulator.uplink import TOPIC_ROOT, open_client, redact_url
from tcu.firmware.errors import LinkError, UsageError
from tcu.tools.tls_options import add_tls_arguments, broker_auth, check_link

DEFAULT_FILTER = TOPIC_ROOT + "/#"  # uplinks, status and downlink commands of every unit
Message = tuple[str, bytes, float, bool]  # topic, payload, received (Unix s), retained


def register_verb(verbs: argparse._SubParsersAction) -> None:
    tap = verbs.add_parser("tap", help="a read-only wire tap: each message's topic, size, CBOR diagnostic "
                                       "notation and decoded meaning")
    tap.add_argument("--broker", required=True, help="mqtt:// or mqtts://")
    tap.add_argument("--topic", default=DEFAULT_FILTER, metavar="FILTER",
                     help="MQTT topic filter (default %s: every unit's uplinks, status and commands)" % DEFAULT_FILTER)
    tap.add_argument("--json", action="store_true", help="one JSON object per message")
    tap.add_argument("--count", type=int, default=0, help="exit after this many messages (0: until Ctrl-C)")
    tap.add_argument("--e2e-key", metavar="FILE", help="open uplinks sealed end to end with this key (hex)")
    add_tls_arguments(tap)
    tap.set_defaults(run=run)


def check_filter(topic: str) -> str:
    """An MQTT topic filter (MQTT 5 section 4.7), refused in one line; never a shared subscription."""
    if topic.startswith("$share/"):
        raise UsageError("--topic %r: the tap never joins a shared subscription: it would take messages "
                         "from the backend's workers (give the plain filter)" % topic)
    levels = topic.split("/")
    bad = (not topic or "\0" in topic or any("#" in level and (level != "#" or i != len(levels) - 1)
                                             for i, level in enumerate(levels))
           or any("+" in level and level != "+" for level in levels))
    if bad:
        raise UsageError("--topic %r: not an MQTT topic filter ('+' stands for a whole level, '#' only "
                         "at the end), e.g. %s or tcu/v1/unit-0001/up/#" % (topic, DEFAULT_FILTER))
    return topic


def run(args: argparse.Namespace) -> int:
    topic = check_filter(args.topic)
    if args.count < 0:
        raise UsageError("--count %d: a number of messages, 0 for no limit" % args.count)
    tls = check_link(args.broker, args)
    from tcu.tools.tap_view import TapView, format_lines  # cbor-diag: loaded by the tap only

    view = TapView(load_e2e_key(args.e2e_key) if args.e2e_key else None)
    inbox: queue.Queue[Message] = queue.Queue()
    subscribed = threading.Event()

    def on_connect(c: mqtt.Client, *args: object) -> None:
        c.subscribe(topic, qos=0)  # at QoS 0 the tap acknowledges nothing

    def setup(client: mqtt.Client) -> None:
        client.on_connect = on_connect
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = lambda c, u, m: inbox.put((m.topic, bytes(m.payload), time.time(), bool(m.retain)))

    client = open_client(args.broker, "tcu-tap-%d-%d" % (os.getpid(), time.monotonic_ns() % 1_000_000),
                         setup=setup, tls=tls, persistent=False, auth=broker_auth(args))
    if not subscribed.wait(5):
        client.disconnect()
        client.loop_stop()
        raise LinkError("the broker %s did not confirm the subscription to %s within 5 s"
                        % (redact_url(args.broker), topic))
    print("tap: listening to %s on %s (read-only: clean session, QoS 0)" % (topic, redact_url(args.broker)),
          file=sys.stderr, flush=True)
    shown = 0
    try:
        while not args.count or shown < args.count:
            try:
                message_topic, payload, received, retained = inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            entry = view.describe(message_topic, payload, received, retained)
            print(json.dumps(entry, default=str) if args.json else "\n".join(format_lines(entry)), flush=True)
            shown += 1
    finally:
        client.disconnect()
        client.loop_stop()
        print("tap: %d messages shown" % shown, file=sys.stderr)
    return 0
