"""Decode throughput on the concatenated gpsd traces, against pynmea2 in the same run.

The input is every NAME.log with a NAME.log.chk in the traces directory, comment lines
dropped, concatenated in memory (no file I/O is timed). Three loops, taking turns for
--repeat rounds (9), each reported at its least process CPU time, in lines per second:

* baseline: ``pynmea2.parse(line, check=True)`` on every line (bytes decoded as ASCII;
  lines it rejects are caught), the plain loop an application would write;
* full: the HAL's whole path, 4 KiB chunks -> framer -> decoder -> epoch assembler -> fixes;
* idle: the HAL with ``positions_needed = False`` (IdleScanner: status sentences found and
  checksummed, time and fix flag read, no coordinates parsed) -> heartbeats.

The full path's fixes are checked to be identical to those of the same pipeline decoding
with the previous pynmea2 + Fraction decoder (``tcu.hal.nmea_reference``), per log.

Usage: python bench/decode_throughput.py [TRACES_DIR] [--repeat N]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynmea2

from tcu.firmware.fix import Fix
from tcu.hal import FixStream
from tcu.hal.framer import NmeaFramer
from tcu.hal.nmea import EpochAssembler
from tcu.hal.nmea_decode import USED_TYPES
from tcu.hal.nmea_reference import decode as reference_decode
from tcu.hal.sources import TraceFile

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "gpsd"
CHUNK = 4096


class MemorySource:
    """Bytes already in memory, in CHUNK pieces, like a trace file without the I/O."""

    is_live = False

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self) -> bytes:
        piece = self._data[self._pos:self._pos + CHUNK]
        self._pos += len(piece)
        return piece

    def close(self) -> None:
        pass


def receiver_bytes(log: Path) -> bytes:
    out = []
    with TraceFile(str(log)) as source:
        while chunk := source.read():
            out.append(chunk)
    return b"".join(out)


def baseline(lines: list[bytes]) -> int:
    parsed = 0
    for line in lines:
        try:
            pynmea2.parse(line.decode("ascii"), check=True)
            parsed += 1
        except (ValueError, UnicodeDecodeError):  # pynmea2.ParseError is a ValueError
            pass
    return parsed


def full(data: bytes) -> list[Fix]:
    return list(FixStream(MemorySource(data)))  # type: ignore[arg-type]


def idle(data: bytes) -> int:
    stream = FixStream(MemorySource(data), positions_needed=False)  # type: ignore[arg-type]
    return sum(1 for _ in stream.items())


def reference_fixes(data: bytes) -> list[Fix]:
    framer, assembler = NmeaFramer(types=USED_TYPES), EpochAssembler(decoder=reference_decode)
    out: list[Fix] = []
    for i in range(0, len(data), CHUNK):
        for sentence in framer.feed(data[i:i + CHUNK]):
            out += assembler.push(sentence)
    return out + assembler.flush()


def interleaved(loops: dict[str, Callable[[], Any]], rounds: int) -> dict[str, tuple[float, Any]]:
    """The least CPU time of each loop over ``rounds`` rounds, the loops taking turns.

    Turns and process CPU time (not wall time) keep the ratios steady on a busy machine:
    a burst of load elsewhere hits every loop of a round alike, and time spent waiting for
    a core is not counted.
    """
    results: dict[str, tuple[float, Any]] = {}
    for _ in range(rounds):
        for name, fn in loops.items():
            start = time.process_time()
            result = fn()
            spent = time.process_time() - start
            if name not in results or spent < results[name][0]:
                results[name] = (spent, result)
    return results


def main(argv: list[str]) -> int:
    repeat = 9
    if "--repeat" in argv:
        i = argv.index("--repeat")
        repeat = int(argv[i + 1])
        del argv[i:i + 2]
    traces = Path(argv[0]) if argv else TRACES
    logs = sorted(p for p in traces.glob("*.log") if Path(str(p) + ".chk").exists())
    per_log = [receiver_bytes(log) for log in logs]
    identical = sum(full(data) == reference_fixes(data) for data in per_log)
    data = b"".join(per_log)
    lines = data.splitlines()
    runs = interleaved({"base": lambda: baseline(lines), "full": lambda: full(data), "idle": lambda: idle(data)},
                       repeat)
    (t_base, parsed), (t_full, fixes), (t_idle, beats) = runs["base"], runs["full"], runs["idle"]
    n = len(lines)
    print("input: %d logs, %d lines, %d bytes (least CPU time of %d interleaved rounds)"
          % (len(logs), n, len(data), repeat))
    print("%-40s %12s %10s" % ("loop", "lines/s", "ratio"))
    print("%-40s %12.0f %10s" % ("pynmea2.parse(check=True) [%d parsed]" % parsed, n / t_base, "1.00"))
    print("%-40s %12.0f %10.2f" % ("HAL full path [%d fixes]" % len(fixes), n / t_full, t_base / t_full))
    print("%-40s %12.0f %10.2f" % ("HAL idle path [%d heartbeats]" % beats, n / t_idle, t_base / t_idle))
    print("fixes identical to the pynmea2-decoder pipeline: %d/%d logs" % (identical, len(logs)))
    return 0 if identical == len(logs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
