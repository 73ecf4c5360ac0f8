"""`tcu record`: record a live receiver (or any source) into a trace file.

The trace is gpsd's log format: a ``#`` header naming the source, then the receiver's raw
bytes exactly as read, binary frames and broken lines included, so `tcu fixes`, `tcu replay`
and `tcu replay-serial --speed 1` replay it, the last at its original timing (taken from the
sentences' own times). A device that goes away is waited for; Ctrl-C ends the recording
cleanly, as does --duration or the end of a trace source.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import time
from typing import BinaryIO

from tcu.firmware.errors import SourceError, UsageError
from tcu.hal.framer import NmeaFramer
from tcu.hal.serial_port import ReconnectingSource
from tcu.hal.source_base import Source
from tcu.hal.sources import open_source
from tcu.tools.fixes_cmd import _baudrate, positive_float

_duration = positive_float("duration in seconds")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("record", help="record a live receiver into a replayable trace file")
    parser.add_argument("source", help="a serial device (/dev/ttyACM0), a pyserial URL or a trace file")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the trace file to write (an existing one only with --force)")
    parser.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    parser.add_argument("--duration", type=_duration, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    parser.add_argument("--baud", type=_baudrate, metavar="N", help="serial baud rate (default: detected)")
    parser.set_defaults(run=run)


def header(spec: str, source: Source, now: datetime.datetime) -> bytes:
    baud = getattr(source, "baudrate", None)
    return ("# Recorded by tcu record from %s%s, started %s\n" % (
        spec, " at %d baud" % baud if baud else "",
        now.strftime("%Y-%m-%dT%H:%M:%SZ"))).encode("ascii", "replace")


class Recorded:
    """What a recording holds: bytes, valid sentences, rejects by cause."""

    def __init__(self) -> None:
        self.bytes = 0
        self.sentences = 0
        self.framer = NmeaFramer()


def record(source: Source, out: BinaryIO, duration_s: float | None) -> Recorded:
    """Copy ``source`` into ``out`` until its end, ``duration_s`` or Ctrl-C."""
    stats = Recorded()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            chunk = source.read()
            if not chunk:
                if not source.is_live:
                    break
                continue
            out.write(chunk)
            out.flush()
            stats.bytes += len(chunk)
            stats.sentences += len(stats.framer.feed(chunk))
    except KeyboardInterrupt:
        pass
    return stats


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a recording as Ctrl-C does: summary line included


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if not args.force and os.path.lexists(args.output):
        raise UsageError("-o %s exists: give --force to overwrite it, or another file" % args.output)
    reconnect = args.source.startswith("/dev/")
    with open_source(args.source, args.baud, reconnect=reconnect) as source:
        if isinstance(source, ReconnectingSource):
            source.on_event = lambda text: print("tcu record: %s" % text, file=sys.stderr, flush=True)
        try:
            out = open(args.output, "wb" if args.force else "xb")
        except FileExistsError:
            raise UsageError("-o %s exists: give --force to overwrite it, or another file" % args.output) from None
        except OSError as exc:
            raise UsageError("cannot write %s: %s" % (args.output, exc.strerror)) from exc
        with out:
            out.write(header(args.source, source, datetime.datetime.now(datetime.UTC)))
            try:
                stats = record(source, out, args.duration)
            except OSError as exc:
                raise SourceError("cannot write %s: %s" % (args.output, exc.strerror)) from exc
    counts = stats.framer.counts
    print("tcu record: %d bytes to %s: %d valid sentences, %d rejected%s" % (
        stats.bytes, args.output, stats.sentences, stats.framer.rejected,
        " (%s)" % ", ".join("%s %d" % kv for kv in sorted(counts.items())) if counts else ""),
        file=sys.stderr)
    return 0 if stats.sentences else 1
