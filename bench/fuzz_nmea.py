"""Fuzz the HAL with mutated sentences seeded from the recorded traces.

Seeds are the checksum-valid sentences of every trace. Each fuzz line is a seed mutated one
to three times (bit flip, byte replaced, truncated, fields swapped, deleted, duplicated or
emptied, digits changed, garbage inserted: NUL, non-ASCII, '$', '*', CR/LF), and half of the
time its checksum is then recomputed so the mutation reaches the decoder instead of dying
at the framer. Lines go through, in batches, as one stream in 4 KiB chunks:

* the careful framer (per line: is it valid?) and the reference pipeline (framer ->
  assembler) on the whole batch;
* the fast path (``FixStream``: scanner -> decoder -> assembler) on the whole batch, and on
  a stream made only of the lines the framer rejected;
* the idle path (``FixStream(positions_needed=False)``) on the whole batch.

Counted: uncaught exceptions (any exception out of the HAL); fixes from invalid sentences
(any fix out of the rejected-lines stream, plus any fast-path fix that the framer-valid
sentences do not give); fixes out of range (|lat| > 90, |lon| > 180, mode not 2/3) and
(0, 0) positions. All must be 0.

Usage: python bench/fuzz_nmea.py [--lines N] [--seed S] [TRACES_DIR]
"""

from __future__ import annotations

import random
import sys
import time
import traceback
from pathlib import Path

from tcu.firmware.fix import Fix
from tcu.hal import FixStream
from tcu.hal.framer import NmeaFramer, nmea_checksum
from tcu.hal.nmea import EpochAssembler
from tcu.hal.sources import TraceFile

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "gpsd"
BATCH = 20_000
CHUNK = 4096
GARBAGE = [b"\x00", b"\xff", b"\xb5b", b"$", b"*", b"\r", b"\n", b",", b".", b"-", b" ", b"9" * 30, b"\xc3\xa9"]


class Memory:
    is_live = False

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self) -> bytes:
        piece = self.data[self.pos:self.pos + CHUNK]
        self.pos += len(piece)
        return piece

    def close(self) -> None:
        pass


def seeds(traces: Path) -> list[bytes]:
    out: list[bytes] = []
    for log in sorted(traces.glob("*.log")):
        framer = NmeaFramer()
        with TraceFile(str(log)) as source:
            while chunk := source.read():
                out += [s.encode("ascii") for s in framer.feed(chunk)]
    return out


def mutate(rng: random.Random, line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        if not data:
            data = bytearray(b"$")
        i = rng.randrange(len(data))
        if op == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[i] = rng.randrange(256)
        elif op == 2:
            del data[rng.randrange(len(data)):]
        elif op == 3:
            data[i:i] = rng.choice(GARBAGE)
        else:
            star = data.rfind(b"*")
            fields = bytes(data[:star if star > 0 else len(data)]).split(b",")
            j, k = rng.randrange(len(fields)), rng.randrange(len(fields))
            if op == 4:
                fields[j], fields[k] = fields[k], fields[j]
            elif op == 5 and len(fields) > 1:
                del fields[j]
            elif op == 6:
                fields.insert(j, fields[k])
            elif op == 7:
                fields[j] = b""
            else:
                fields[j] = bytes(rng.choice(b"0123456789") if c in b"0123456789" else c for c in fields[j])
            data = bytearray(b",".join(fields) + (bytes(data[star:]) if star > 0 else b""))
    if rng.random() < 0.5:  # recompute the checksum: the mutation reaches the decoder
        star = data.rfind(b"*")
        body = bytes(data[1:star if star > 0 else len(data)])
        data = bytearray(data[:1] + body + b"*%02X" % nmea_checksum(body))
    return bytes(data)


def check(fixes: list[Fix], counts: dict[str, int]) -> None:
    for fix in fixes:
        if (fix.lat_e7, fix.lon_e7) == (0, 0):
            counts["zero_positions"] += 1
        if not (-900_000_000 <= fix.lat_e7 <= 900_000_000 and -1_800_000_000 <= fix.lon_e7 <= 1_800_000_000
                and fix.mode in (2, 3)):
            counts["out_of_range"] += 1


def run_batch(lines: list[bytes], counts: dict[str, int]) -> None:
    framer = NmeaFramer()
    invalid: list[bytes] = []
    for line in lines:
        if not framer.feed(line + b"\r\n"):
            invalid.append(line)
    counts["lines_rejected"] += len(invalid)
    stream = b"\r\n".join(lines) + b"\r\n"
    try:
        careful = EpochAssembler()
        expected: list[Fix] = []
        for sentence in NmeaFramer().feed(stream):
            expected += careful.push(sentence)
        expected += careful.flush()
        got = list(FixStream(Memory(stream)))  # type: ignore[arg-type]
        from_invalid = list(FixStream(Memory(b"\r\n".join(invalid) + b"\r\n")))  # type: ignore[arg-type]
        sum(1 for _ in FixStream(Memory(stream), positions_needed=False).items())  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - counting them is the point
        counts["uncaught_exceptions"] += 1
        traceback.print_exc()
        return
    counts["fixes"] += len(got)
    counts["fixes_from_invalid"] += len(from_invalid) + sum(1 for f in got if f not in expected)
    counts["fixes_missing_vs_framer"] += sum(1 for f in expected if f not in got)
    check(got + from_invalid, counts)


def main(argv: list[str]) -> int:
    total, seed = 1_000_000, 1
    args = list(argv)
    for flag in ("--lines", "--seed"):
        if flag in args:
            i = args.index(flag)
            value = int(args[i + 1])
            del args[i:i + 2]
            total, seed = (value, seed) if flag == "--lines" else (total, value)
    traces = Path(args[0]) if args else TRACES
    pool = seeds(traces)
    rng = random.Random(seed)
    counts: dict[str, int] = dict.fromkeys((
        "lines", "lines_rejected", "fixes", "uncaught_exceptions", "fixes_from_invalid",
        "out_of_range", "zero_positions", "fixes_missing_vs_framer"), 0)
    start = time.perf_counter()
    while counts["lines"] < total:
        batch = [mutate(rng, rng.choice(pool)) for _ in range(min(BATCH, total - counts["lines"]))]
        counts["lines"] += len(batch)
        run_batch(batch, counts)
    print("seeds: %d sentences from %s; seed %d; %.1f s" % (len(pool), traces, seed, time.perf_counter() - start))
    for key, value in counts.items():
        print("%-24s %d" % (key, value))
    bad = sum(counts[k] for k in ("uncaught_exceptions", "fixes_from_invalid", "out_of_range", "zero_positions"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
