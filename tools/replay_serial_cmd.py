"""`tcu replay-serial`: play a trace into a serial port at its original pace, as a receiver would.

A unit under test (this one, gpsd, any other) then reads a recorded drive from a serial
port. PORT is a device or pyserial URL to write to (one end of a socat pair, a USB-serial
adapter looped to the unit); without PORT a pseudo-terminal is created and its path printed
(``--link PATH`` also makes a symlink to it, a stable name for the unit's configuration).
The pace comes from the sentences' own times, times ``--speed``; ``--loop`` starts over at
the end of the trace. Ctrl-C stops.

``--retime`` moves the trace to the present (hal/retime.py): each sentence's UTC time, and
the date in RMC and ZDA, shifted so the first epoch is now, checksums recomputed; the
pacing stays the trace's own (so it cannot go with --speed). A unit that checks its fixes
against its wall clock, like `tcu run`, can then be driven by a recorded drive. Where the
pacer does not sleep (a jump of more than 5 s or a step back in the trace) and with --loop
at each pass, the times start again at the then current time, so they never run ahead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
import tty
from collections.abc import Callable, Iterator

import serial

from tcu.firmware.errors import SourceError, UsageError
from tcu.hal.pacer import PacedTrace
from tcu.hal.retime import Retimer
from tcu.tools.fixes_cmd import _baudrate, speed_factor


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay-serial", help="write a trace into a serial port at its original pace")
    parser.add_argument("trace", help="a recorded NMEA trace (gpsd .log format)")
    parser.add_argument("port", nargs="?", help="a serial device or pyserial URL to write to "
                                                "(default: a new pseudo-terminal, path printed)")
    parser.add_argument("--speed", type=speed_factor, default=1.0, metavar="X",
                        help="pace at the original timing times X (default 1)")
    parser.add_argument("--loop", action="store_true", help="start over at the end of the trace")
    parser.add_argument("--retime", action="store_true",
                        help="shift the sentences' UTC times and dates so the trace starts now (checksums redone)")
    parser.add_argument("--link", metavar="PATH", help="with no PORT: symlink PATH to the pseudo-terminal")
    parser.add_argument("--baud", type=_baudrate, default=9600, metavar="N", help="baud rate of PORT (default 9600)")
    parser.set_defaults(run=run)


@contextlib.contextmanager
def _pty(link: str | None) -> Iterator[Callable[[bytes], None]]:
    """A new pseudo-terminal: the unit opens the slave path; we write to the master."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no CR/LF translation: the bytes go through unchanged
    path = os.ttyname(slave)
    linked = False
    try:
        if link:
            try:
                if os.path.islink(link):
                    os.unlink(link)  # the link of an earlier run; never a real file
                os.symlink(path, link)
                linked = True
            except OSError as err:
                raise UsageError("--link %s: cannot make the symlink: %s" % (link, err.strerror)) from None
        print("tcu replay-serial: writing to %s%s" % (path, " (%s)" % link if link else ""),
              file=sys.stderr, flush=True)

        def write(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(master, view):]

        yield write
    finally:
        if linked and link and os.path.islink(link):
            with contextlib.suppress(OSError):
                os.unlink(link)
        os.close(master)
        os.close(slave)


@contextlib.contextmanager
def _port(url: str, baudrate: int) -> Iterator[Callable[[bytes], None]]:
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, write_timeout=10)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise SourceError("cannot open serial port %s: %s" % (url, exc)) from exc

    def write(data: bytes) -> None:
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise SourceError("cannot write to %s: %s" % (url, exc)) from exc

    try:
        yield write
    finally:
        port.close()


def play(trace: str, write: Callable[[bytes], None], speed: float, loop: bool, retime: bool = False) -> int:
    """Write ``trace`` through ``write`` at its pace (retimed to start now if ``retime``);
    returns the bytes written."""
    total = 0
    while True:
        retimer = Retimer(int(time.time() * 1000)) if retime else None
        with PacedTrace(trace, speed) as paced:
            gaps = 0
            while line := paced.read():
                if retimer is not None:
                    if paced.jumps + paced.backwards != gaps:  # not slept on: now again, not ahead
                        gaps = paced.jumps + paced.backwards
                        retimer.rebase(int(time.time() * 1000))
                    line = retimer.line(line)
                write(line)
                total += len(line)
        if not loop or total == 0:
            return total


def run(args: argparse.Namespace) -> int:
    if args.link and args.port:
        raise UsageError("--link names the pseudo-terminal created when no PORT is given")
    if args.retime and args.speed != 1.0:
        raise UsageError("--retime keeps the trace's own pace, so the times match the clock: drop --speed")
    PacedTrace(args.trace, args.speed).close()  # a missing trace fails before the port is set up
    # SIGTERM (systemd, a test stopping it by PID) ends it like Ctrl-C: the --link symlink goes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sink = _port(args.port, args.baud) if args.port else _pty(args.link)
    with sink as write:
        try:
            total = play(args.trace, write, args.speed, args.loop, args.retime)
        except KeyboardInterrupt:
            return 0
    print("tcu replay-serial: %d bytes written" % total, file=sys.stderr)
    return 0
