"""`tcu replay`: run the unit over a recorded trace on a virtual clock and publish every
uplink to a broker (an embedded one unless --broker is given)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from tcu.emulator.broker import EmbeddedBroker
from tcu.emulator.replay import Replay, ReplayStats, TriggerWindow, parse_trigger
from tcu.emulator.uplink import MqttUplink
from tcu.firmware.events import Publish
from tcu.firmware.fix import Fix
from tcu.firmware.unit import Unit
from tcu.hal import iter_fixes
from tcu.tools.view import UplinkView


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
    parser.set_defaults(run=run)


def primed(fixes: Iterator[Fix]) -> Iterator[Fix]:
    """Read the first fix now, so a source that cannot be read fails before any connecting."""
    try:
        first = next(fixes)
    except StopIteration:
        return iter(())
    return itertools.chain([first], fixes)


def replay_to_broker(trace: str, windows: list[TriggerWindow], broker_url: str, unit_id: str,
                     jsonl: IO[str] | None = None) -> ReplayStats:
    """The whole replay: returns once the broker acknowledged every uplink."""
    fixes = primed(iter_fixes(trace))
    view = UplinkView()
    with MqttUplink(broker_url, unit_id) as uplink:
        def sink(action: Any, now_ms: int) -> None:
            if isinstance(action, Publish):
                uplink.publish(action.payload)
                if jsonl is not None:
                    jsonl.write(json.dumps(view.describe(action.payload)) + "\n")

        stats = Replay(Unit(), windows, sink).run(fixes)
        uplink.drain(timeout_s=30)
    return stats


def run(args: argparse.Namespace) -> int:
    windows = [parse_trigger(text) for text in args.trigger]
    with contextlib.ExitStack() as stack:
        url = args.broker or stack.enter_context(EmbeddedBroker()).url
        jsonl = None
        if args.jsonl == "-":
            jsonl = sys.stdout
        elif args.jsonl:
            jsonl = stack.enter_context(open(args.jsonl, "w", encoding="utf-8"))
        stats = replay_to_broker(args.trace, windows, url, args.unit, jsonl)
    print("replay: %d fixes (%d dropped unread while no session was active), %d uplinks "
          "(%d located) acknowledged by %s%s" % (
              stats.fixes, stats.fixes_dropped, stats.uplinks, stats.located, url,
              "" if args.broker else " (embedded)"), file=sys.stderr)
    return 0
