"""Fuzz the AT core (hal/at.py) with random and mutated modem lines.

Lines are real responses and URCs (both profiles of `tcu modem-sim`), mutated (bytes
flipped, truncated, CR/LF/NUL/0xFF/'>' inserted) or wholly random bytes, fed as one stream
split at random points, with commands sent (some with an SMS payload) whenever the core is
idle and the clock advancing so timeouts fire. Counted: exceptions other than ModemError
(must be 0), and how the lines came out (responses, URCs, noise, timeouts).

Usage: python bench/fuzz_at.py [--lines N] [--seed S]     (default 100,000 lines)
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback

from tcu.hal.at import AtConnection, Failure, ModemError, Noise, Reply, Urc

SEEDS = [b"OK", b"ERROR", b"+CME ERROR: 10", b"+CMS ERROR: 331", b"+CSQ: 20,99", b"RING", b"RDY", b"POWERED DOWN",
         b'+CREG: 2,1,"1A2B","1C3D4E5",7', b"+CEREG: 5", b'+QIND: "csq",20,99', b'+CMTI: "SM",3', b"> ",
         b'+QENG: "servingcell","NOCONN","LTE","FDD",001,01,1C3D4E5,257,1850,3,5,5,1A2B,-95,-10,-65,15,9,-,-',
         b"+CPSI: LTE,Online,001-01,0x1A2B,29614309,257,EUTRAN-BAND3,1850,5,5,-100,-950,-650,15", b"AT+CSQ",
         b"+CMGS: 7", b"CONNECT", b"NO CARRIER", b"+CPIN: READY", b"Quectel", b"EG25", b"+QGPS: 1"]
COMMANDS = ["AT", "AT+CSQ", "AT+CREG?", "AT+CEREG?", "AT+CMGS=20", 'AT+QENG="servingcell"', "AT+CPSI?", "ATI"]


def mutate(rng: random.Random, line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(0, 3)):
        op = rng.randrange(4)
        pos = rng.randint(0, len(data))
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = rng.choice([b"\r", b"\n", b"\x00", b"\xff", b">", b" ", b",", b'"'])
        elif op == 2:
            del data[pos:]
        else:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def fuzz(lines: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    conn = AtConnection()
    now = 0.0
    counts = {"replies": 0, "failures": 0, "urcs": 0, "noise": 0, "modem_errors": 0, "other_exceptions": 0}
    for _ in range(lines):
        line = mutate(rng, rng.choice(SEEDS)) if rng.random() < 0.8 else rng.randbytes(rng.randint(0, 120))
        try:
            if not conn.busy and rng.random() < 0.3:
                command = rng.choice(COMMANDS)
                conn.send(command, now, payload=b"0011" if command.startswith("AT+CMGS") else None)
            data = line + b"\r\n"
            cut = rng.randint(0, len(data))
            events = conn.feed(data[:cut], now) + conn.feed(data[cut:], now)
            now += rng.choice((0.0, 0.01, 0.5, 3.0))
            events += conn.timeout(now)
        except ModemError:
            counts["modem_errors"] += 1
            continue
        except Exception:  # noqa: BLE001 - what the fuzzer is looking for
            counts["other_exceptions"] += 1
            if counts["other_exceptions"] <= 3:
                traceback.print_exc()
            continue
        for event in events:
            key = {Reply: "replies", Failure: "failures", Urc: "urcs", Noise: "noise"}.get(type(event))
            if key:
                counts[key] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "fuzz").splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    began = time.perf_counter()
    counts = fuzz(args.lines, args.seed)
    took = time.perf_counter() - began
    print("%d lines in %.1f s (%.0f lines/s): %s" % (args.lines, took, args.lines / took,
                                                     ", ".join("%s %d" % kv for kv in counts.items())))
    return 1 if counts["other_exceptions"] else 0


if __name__ == "__main__":
    sys.exit(main())
