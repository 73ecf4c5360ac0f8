"""`tcu replay`: run the unit over a recorded trace on a virtual clock and publish every
uplink to a broker (an embedded one unless --broker is given)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import paho.mqtt.client as mqtt
from tcu.emulator.broker import EmbeddedBroker
from tcu.emulator.credentials import Credentials
from tcu.emulator.crypto import load_e2e_key, seal_uplink
from tcu.emulator.link import DurableUplink, LinkStats
from tcu.emulator.outbox import OutboxStats
from tcu.emulator.replay import Replay, ReplayStats, TriggerWindow, parse_trigger
from tcu.emulator.uplink import TlsOptions, redact_url, uplink_topic
from tcu.firmware.errors import UsageError
from tcu.firmware.events import Publish
from tcu.firmware.unit import Unit
from tcu.hal import iter_fixes
from tcu.tools import progress
from tcu.tools.tls_options import add_tls_arguments, broker_auth, tls_options
from tcu.tools.view import UplinkView

EMBEDDED_PROTOCOL = mqtt.MQTTv311  # amqtt speaks 3.1.1 only (and hangs on MQTT 5 properties)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay", help="run the unit over a recorded NMEA trace, publishing its uplinks")
    parser.add_argument("trace", help="a recorded NMEA trace (gpsd .log format)")
    parser.add_argument("--trigger", action="append", default=[], metavar="KIND@START[+DURATION]",
                        help="hold a trigger input (crash, theft, sos, roadside, assist) active from START "
                             "for DURATION seconds after the first fix (no DURATION: to the end); repeatable")
    parser.add_argument("--broker", help="mqtt://HOST:PORT (default: an embedded broker on loopback)")
    parser.add_argument("--jsonl", metavar="FILE",
                        help="write each uplink decoded, one JSON object per line ('-': stdout)")
    parser.add_argument("--unit", default="demo-unit", help="the unit's identity in topics (default: demo-unit)")
    parser.add_argument("--e2e-key", metavar="FILE",
                        help="seal located uplinks end to end (COSE_Encrypt0, AES-GCM) with this key (hex)")
    parser.add_argument("--outbox", metavar="PATH",
                        help="the durable outbox journal (default: a temporary one, removed at exit); what is "
                             "not acknowledged stays in it and is sent first at the next run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (shown only on a terminal)")
    add_tls_arguments(parser)
    parser.set_defaults(run=run)


@dataclass
class ReplayResult:
    replay: ReplayStats
    link: LinkStats
    outbox: OutboxStats
    recovered: str
    boot: int


def replay_to_broker(trace: str, windows: list[TriggerWindow], broker_url: str, unit_id: str,
                     jsonl: IO[str] | None = None, outbox: str | None = None,
                     tls: TlsOptions | None = None, protocol: mqtt.MQTTProtocolVersion | None = None,
                     e2e_key: bytes | None = None, wrap_source: Callable[[Any], Any] | None = None,
                     auth: Credentials | None = None) -> ReplayResult:
    """The whole replay: every uplink goes through the durable outbox; returns once the
    broker acknowledged every uplink (those left from an earlier run included). While no
    session is active the HAL parses no position at all (the idle path).
    e2e_key: located uplinks are sealed end to end for the backend (COSE_Encrypt0).
    wrap_source: wraps the trace's byte source (tools/progress.py counts the bytes read)."""
    stream = iter_fixes(trace, positions_needed=False)  # opens now: a bad trace fails before connecting
    if wrap_source is not None:
        stream.source = wrap_source(stream.source)
    view = UplinkView()
    with stream, DurableUplink(broker_url, unit_id, outbox, tls=tls, protocol=protocol,
                                         auth=auth) as uplink:
        topic = uplink_topic(unit_id, uplink.boot)

        def sink(action: Any, now_ms: int) -> None:
            if isinstance(action, Publish):
                if jsonl is not None:
                    jsonl.write(json.dumps(view.describe(action.payload)) + "\n")
                if e2e_key is not None and action.located:
                    sealed = seal_uplink(action.payload, e2e_key, topic)
                    action = Publish(sealed, action.priority, action.sid, action.seq, action.located)
                uplink.send(action)

        from tcu.emulator.msd import Vehicle, encoder_for  # crash and sos sessions send an eCall MSD

        stats = Replay(Unit(msd_encoder=encoder_for(Vehicle())), windows, sink).run_stream(stream)
        uplink.drain(timeout_s=30)
        recovered = uplink.outbox.recovery
        return ReplayResult(stats, uplink.stats, uplink.outbox.stats,
                            recovered.describe() if recovered.cut_at is not None else "", uplink.boot)


def run(args: argparse.Namespace) -> int:
    windows = [parse_trigger(text) for text in args.trigger]
    with contextlib.ExitStack() as stack:
        url = args.broker or stack.enter_context(EmbeddedBroker()).url
        jsonl = None
        if args.jsonl == "-":
            jsonl = sys.stdout
        elif args.jsonl:
            try:
                jsonl = stack.enter_context(open(args.jsonl, "w", encoding="utf-8"))
            except OSError as err:
                raise UsageError("--jsonl %s: cannot write it: %s" % (args.jsonl, err.strerror)) from None
        e2e_key = load_e2e_key(args.e2e_key) if args.e2e_key else None
        shown = progress.wanted(args.quiet, jsonl)
        with progress.trace_bar(args.trace, "replay", shown) as wrap:
            result = replay_to_broker(args.trace, windows, url, args.unit, jsonl, args.outbox, tls_options(args),
                                      None if args.broker else EMBEDDED_PROTOCOL, e2e_key, wrap, broker_auth(args))
    stats = result.replay
    if result.recovered:
        print("replay: %s" % result.recovered, file=sys.stderr)
    print("replay: %d receiver seconds with no session active (no position decoded), %d fixes in sessions, "
          "%d uplinks (%d located) acknowledged by %s%s" % (
              stats.dormant_seconds, stats.fixes, stats.uplinks, stats.located, redact_url(url),
              "" if args.broker else " (embedded)"), file=sys.stderr)
    extra = []
    if result.link.backlog:
        extra.append("%d sent from the outbox's backlog" % result.link.backlog)
    if result.outbox.evicted_total:
        extra.append("%d evicted from a full outbox (%s)" % (result.outbox.evicted_total, ", ".join(
            "priority %d: %d" % kv for kv in sorted(result.outbox.evicted.items()))))
    if result.outbox.over_limit:
        extra.append("%d crash/SOS uplinks kept beyond the outbox limit" % result.outbox.over_limit)
    if extra:
        print("replay: boot %d; %s" % (result.boot, "; ".join(extra)), file=sys.stderr)
    return 0
