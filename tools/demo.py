"""`tcu demo`: the whole loop on one machine with nothing installed. An embedded broker,
the reference backend and the unit replaying a bundled drive with a scripted theft alarm
and crash; prints what the backend received as a timeline, dormant stretches included."""

from __future__ import annotations

import argparse
from importlib import resources
from typing import Any

from tcu.emulator.broker import EmbeddedBroker
from tcu.emulator.link import DurableUplink
from tcu.emulator.msd import Vehicle, encoder_for
from tcu.emulator.replay import Replay, late_report, parse_trigger
from tcu.emulator.uplink import ALL_UPLINKS
from tcu.firmware.errors import LinkError, SourceError
from tcu.firmware.events import Indicator, Publish
from tcu.firmware.unit import Unit
from tcu.hal import iter_fixes
from tcu.tools.backend import Backend, format_record
from tcu.tools.replay_cmd import EMBEDDED_PROTOCOL

SCRIPT = ("theft@60+150", "crash@400")
COLLAPSE_AFTER = 3  # located reports shown per session before the rest are summarised


def bundled_trace() -> str:
    return str(resources.files("tcu.tools").joinpath("data/demo-drive.log"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the whole loop with nothing installed: broker, backend, unit, timeline")
    parser.add_argument("--trace", default=None, help="replay this trace instead of the bundled drive")
    parser.add_argument("--trigger", action="append", default=None, metavar="KIND@START[+DURATION]",
                        help="replace the scripted triggers (default: %s)" % " ".join(SCRIPT))
    parser.add_argument("--allow-late", action="store_true",
                        help="exit 0 even if a trigger starts after the end of the trace (it never fires)")
    parser.set_defaults(run=run)


def _clock(ms: int, t0: int) -> str:
    seconds = max(0, ms - t0) // 1000
    return "+%d:%02d" % (seconds // 60, seconds % 60)


def run(args: argparse.Namespace) -> int:
    trace = args.trace or bundled_trace()
    windows = [parse_trigger(t) for t in (args.trigger or SCRIPT)]
    unit_lines: list[tuple[int, int, str]] = []  # (time ms, order, text)
    sent_at: dict[int, int] = {}
    with EmbeddedBroker() as broker:
        backend = Backend(broker.url, protocol=EMBEDDED_PROTOCOL)
        try:
            stream = iter_fixes(trace, positions_needed=False)
            with stream, DurableUplink(broker.url, "demo-unit", protocol=EMBEDDED_PROTOCOL) as uplink:
                dropped_before = [0]

                def sink(action: Any, now_ms: int) -> None:
                    if isinstance(action, Publish):
                        uplink.send(action)
                        sent_at[action.seq] = now_ms
                    elif isinstance(action, Indicator):
                        dormant = replay.stats.dormant_seconds - dropped_before[0]
                        dropped_before[0] = replay.stats.dormant_seconds
                        if action.on:
                            unit_lines.append((now_ms, 0, "dormant for %d receiver seconds: no position decoded, "
                                               "kept or sent" % dormant))
                        # on: before the session's first uplink; off: after its last
                        unit_lines.append((now_ms, 1 if action.on else 3,
                                           "privacy indicator %s" % ("ON" if action.on else "off")))

                replay = Replay(Unit(msd_encoder=encoder_for(Vehicle())), windows, sink)
                stats = replay.run_stream(stream)
                uplink.drain()
            if not backend.wait_for(stats.uplinks, timeout_s=10):
                raise LinkError("the backend received %d of %d uplinks" % (len(backend.records), stats.uplinks))
        finally:
            backend.close()
    if stats.first_fix_ms is None:
        raise SourceError("%s has no fixes" % trace)
    tail = stats.dormant_seconds - dropped_before[0]
    t0, t_end = stats.first_fix_ms, stats.last_ms or stats.first_fix_ms
    print("tcu demo: unit 'demo-unit' replaying %s (%s of receiver time)"
          % (trace.rsplit("/", 1)[-1], _clock(t_end, t0)[1:]))
    print("          embedded MQTT broker %s; backend subscribed to %s" % (broker.url, ALL_UPLINKS))
    print("          triggers: %s\n" % " ".join(args.trigger or SCRIPT))
    for line in _timeline(unit_lines, backend.records, sent_at, t0):
        print(line)
    if tail:
        print("%-7s unit     dormant again for %d receiver seconds" % (_clock(t_end, t0), tail))
    late = late_report(stats)
    if late:
        print("\ntcu demo: %s" % late)
    print("\n%d receiver seconds with no session: not one position decoded; %d fixes in sessions; %d uplinks, "
          "%d located, %d bytes; all received by the backend" % (
              stats.dormant_seconds, stats.fixes, stats.uplinks, stats.located,
              sum(r["bytes"] for r in backend.records)))
    return 1 if late and not args.allow_late else 0


def _timeline(unit_lines: list[tuple[int, int, str]], records: list[dict[str, Any]],
              sent_at: dict[int, int], t0: int) -> list[str]:
    rows = [(t, order, "unit   ", text) for t, order, text in unit_lines]
    shown: dict[int, int] = {}
    by_session: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_session.setdefault(record["session"], []).append(record)
    for record in records:
        if record["type"] == "report":
            reports = [r for r in by_session[record["session"]] if r["type"] == "report"]
            n = shown[record["session"]] = shown.get(record["session"], 0) + 1
            if n == COLLAPSE_AFTER + 1 and len(reports) > COLLAPSE_AFTER + 1:
                rows.append((sent_at[record["seq"]], 2, "backend", "... %d more located reports in session %d"
                             % (len(reports) - COLLAPSE_AFTER - 1, record["session"])))
            if COLLAPSE_AFTER < n < len(reports):
                continue
        rows.append((sent_at[record["seq"]], 2, "backend", format_record(record)))
    rows.sort(key=lambda row: (row[0], row[1]))
    return ["%-7s %s  %s" % (_clock(t, t0), who, text) for t, _, who, text in rows]


