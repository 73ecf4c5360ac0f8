"""`tcu replay`: run the unit over a recorded trace on a virtual clock and publish every
uplink to a broker (an embedded one unless --broker is given)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
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
from tcu.emulator.replay import Replay, ReplayStats, TriggerWindow, late_report, parse_trigger
from tcu.emulator.uplink import TlsOptions, redact_url, uplink_topic
from tcu.firmware.errors import UsageError
from tcu.firmware.events import Publish
from tcu.firmware.unit import Unit
from tcu.hal import iter_fixes
from tcu.hal.summary import summarize
from tcu.tools import progress
from tcu.tools.tls_options import add_tls_arguments, broker_auth, check_link, tls_options
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
    parser.add_argument("--allow-late", action="store_true",
                        help="exit 0 even if a trigger starts after the end of the trace (it never fires)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (shown only on a terminal)")
    add_tls_arguments(parser)
    parser.set_defaults(run=run)


class ReplayInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a replay: how many uplinks the broker had not acknowledged."""

    def __init__(self, pending: int, boot: int) -> None:
        super().__init__(pending, boot)
        self.pending, self.boot = pending, boot


@dataclass
class ReplayResult:
    replay: ReplayStats
    link: LinkStats
    outbox: OutboxStats
    recovered: str
    boot: int
    source: dict[str, Any]  # what the trace gave (hal/summary.py), with the reason for an empty result


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

        try:
            stats = Replay(Unit(msd_encoder=encoder_for(Vehicle())), windows, sink).run_stream(stream)
            uplink.drain(timeout_s=30)
        except KeyboardInterrupt:
            raise ReplayInterrupted(len(uplink.outbox), uplink.boot) from None
        recovered = uplink.outbox.recovery
        source = summarize(stream)
        if stats.first_fix_ms is None and not source["reason"]:
            source["reason"] = "no receiver second with a fix: the unit's clock never started"
        return ReplayResult(stats, uplink.stats, uplink.outbox.stats,
                            recovered.describe() if recovered.cut_at is not None else "", uplink.boot, source)


def _pending_text(stop: ReplayInterrupted, outbox: str | None) -> str:
    if not stop.pending:
        return "every uplink so far was acknowledged (boot %d)" % stop.boot
    if outbox:
        return ("%d uplinks of boot %d not yet acknowledged are kept in the outbox %s; "
                "they are sent first by the next run with --outbox %s" % (stop.pending, stop.boot, outbox, outbox))
    return ("%d uplinks of boot %d not yet acknowledged are lost with the temporary outbox "
            "(give --outbox FILE to keep them)" % (stop.pending, stop.boot))


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def clock_summary(stats: ReplayStats) -> str:
    """What the virtual monotonic clock did with the receiver's time (emulator/replay.py)."""
    return ("receiver time stepped back %d times and jumped forward %d times (not counted as elapsed time); "
            "%d times corrected for GPS week rollover" % (stats.steps_back, stats.steps_forward, stats.rollovers))


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # SIGTERM says what is pending, as Ctrl-C does
    windows = [parse_trigger(text) for text in args.trigger]
    tls = check_link(args.broker, args) if args.broker else tls_options(args)
    if tls is not None and not args.broker:
        raise UsageError("--tls-* options need --broker mqtts://...: the embedded broker speaks plain MQTT")
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
            try:
                result = replay_to_broker(args.trace, windows, url, args.unit, jsonl, args.outbox, tls,
                                          None if args.broker else EMBEDDED_PROTOCOL, e2e_key, wrap,
                                          broker_auth(args))
            except ReplayInterrupted as stop:
                print("\nreplay: interrupted: %s" % _pending_text(stop, args.outbox), file=sys.stderr)
                return 130
            except KeyboardInterrupt:
                print("\nreplay: interrupted while opening the trace or connecting to %s: nothing replayed%s"
                      % (url, "; the outbox %s is as it was" % args.outbox if args.outbox else ""), file=sys.stderr)
                return 130
    stats = result.replay
    if result.recovered:
        print("replay: %s" % result.recovered, file=sys.stderr)
    print("replay: %d receiver seconds with no session active (no position decoded), %d fixes in sessions, "
          "%d uplinks (%d located) acknowledged by %s%s" % (
              stats.dormant_seconds, stats.fixes, stats.uplinks, stats.located, redact_url(url),
              "" if args.broker else " (embedded)"), file=sys.stderr)
    print("replay: %s" % clock_summary(stats), file=sys.stderr)
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
    if result.source["reason"]:
        print("replay: %s" % result.source["reason"], file=sys.stderr)
    late = late_report(stats)
    if late:
        print("replay: %s" % late, file=sys.stderr)
    return 1 if late and not args.allow_late else 0
