"""Fuzz the unit's downlink path: N inputs (default 1,000,000) mutated from valid signed and
MACed commands, plus random bytes, into Unit.handle(Downlink). Only the protocol's refusal
may come out (as a command response); any exception is a failure. Each input's decode time
is measured; memory is traced on a sample (tracemalloc slows every allocation).

Run: python bench/fuzz_downlink.py [N] [SEED]
"""

from __future__ import annotations

import random
import sys
import time
import tracemalloc

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tcu.emulator.crypto import ed25519_verify
from tcu.firmware.events import Downlink, Publish
from tcu.firmware.unit import Unit
from tcu.protocol import commands as cmd
from tcu.protocol import cose, messages

UNIT = "unit-0001"
NOW = 1_778_745_600
MEMORY_SAMPLE = 97  # trace memory on every 97th input


def seeds() -> list[bytes]:
    signer = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    hmac_key = bytes(range(100, 132))
    out = []
    for code, args in ((1, {1: "police-42", 2: NOW + 3600}), (2, {1: "court-7", 2: NOW + 600}), (3, {3: 1}),
                       (4, {3: 1}), (5, {4: 60})):
        c = cmd.Command(UNIT, 10, NOW - 60, NOW + 60, code, args)
        out.append(cmd.seal_command(c, b"ed", cose.ALG_EDDSA, None, signer.sign))
        out.append(cmd.seal_command(c, b"mac", cose.ALG_HMAC_256_256, hmac_key))
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op, at = rng.randrange(6), rng.randrange(len(buf) or 1)
        if op == 0 and buf:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[at] = rng.randrange(256)
        elif op == 2:
            buf[at:at] = bytes([rng.choice((0x18, 0x19, 0x1A, 0x1B, 0x5F, 0x7F, 0x9F, 0xBF, 0xFF, 0xC0, 0xD8))])
        elif op == 3:
            del buf[at:at + rng.randrange(1, 4)]
        elif op == 4:
            del buf[at:]
        else:
            buf[at:at] = rng.randbytes(rng.randrange(1, 8))
    return bytes(buf)


def main(n: int = 1_000_000, seed: int = 1) -> int:
    signer = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    keys = [cmd.BackendKey(b"ed", cose.ALG_EDDSA, signer.public_key()),
            cmd.BackendKey(b"mac", cose.ALG_HMAC_256_256, bytes(range(100, 132)))]
    verifier = cmd.CommandVerifier(UNIT, keys, ed25519_verify)
    rng, corpus = random.Random(seed), seeds()
    reasons: dict[str, int] = {}
    crashes = forged_accepted = unchanged = 0
    peak_bytes = 0.0
    times: list[float] = []
    originals = set(corpus)
    started = time.perf_counter()
    for i in range(n):
        data = rng.randbytes(rng.randrange(64)) if i % 10 == 0 else mutate(rng, rng.choice(corpus))
        if data in originals:  # a mutation that changed nothing (a byte set to its own value)
            unchanged += 1
            continue
        unit = Unit(verifier=verifier, command_counter=9)
        traced = i % MEMORY_SAMPLE == 0
        if traced:
            tracemalloc.start()
        t = time.perf_counter()
        try:
            actions = unit.handle(Downlink(data), NOW * 1000)
        except Exception as err:  # noqa: BLE001 - counting is the point
            crashes += 1
            print("uncaught %s on %s" % (type(err).__name__, data.hex()))
            continue
        finally:
            times.append(time.perf_counter() - t)
            if traced:
                peak_bytes = max(peak_bytes, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
        reply = messages.decode([a for a in actions if isinstance(a, Publish)][-1].payload)
        if reply.result == messages.RESULT_ACCEPTED or reply.reason == cmd.R_POLICY:
            forged_accepted += 1  # it passed authentication: a forgery got through
            print("FORGED COMMAND ACCEPTED: %s" % data.hex())
        else:
            name = cmd.REASON_NAMES[reply.reason or 0]
            reasons[name] = reasons.get(name, 0) + 1
    elapsed = time.perf_counter() - started
    print("%d inputs (%d mutations left a seed unchanged and were skipped) in %.0f s: "
          "%d uncaught exceptions, %d forged commands authenticated"
          % (n, unchanged, elapsed, crashes, forged_accepted))
    print("refused by reason: %s" % ", ".join("%s %d" % kv for kv in sorted(reasons.items())))
    times.sort()
    print("time per input: median %.3f ms, p99.9 %.3f ms, max %.2f ms; peak traced memory per input %.1f KiB "
          "(sampled 1 in %d)" % (times[len(times) // 2] * 1000, times[int(len(times) * 0.999)] * 1000,
                                 times[-1] * 1000, peak_bytes / 1024, MEMORY_SAMPLE))
    return 1 if crashes or forged_accepted else 0


if __name__ == "__main__":
    sys.exit(main(*[int(a) for a in sys.argv[1:3]]))
