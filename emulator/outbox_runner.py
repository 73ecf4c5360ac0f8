"""A unit process for fault tests: `python -m tcu.emulator.outbox_runner`.

With --generate N it first makes N uplinks from real crash and SOS sessions (the firmware's
Unit on synthetic fixes), puts them into the durable outbox with one commit and prints
`queued N boot B`. Then (every start) it opens the outbox, connects and prints
`started pending P boot B`, publishes at most --rate uplinks/s, and once the broker has
acknowledged everything prints `done ...` and exits 0. SIGKILL it at any point and start it
again: what was not acknowledged is sent again.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tcu.emulator.link import DurableUplink
from tcu.emulator.outbox import Outbox, next_boot
from tcu.firmware.errors import TcuError
from tcu.firmware.events import FixEvent, Publish, Tick, TriggerOn
from tcu.firmware.fix import MODE_3D, Fix
from tcu.firmware.services import CRASH, SOS
from tcu.firmware.unit import Unit

T0_MS = 1_760_000_000_000


def crash_and_sos_uplinks(count: int, t0_ms: int = T0_MS) -> list[Publish]:
    """The first `count` uplinks of alternating crash and SOS sessions on a 1 Hz drive."""
    unit = Unit()
    out: list[Publish] = []
    now = t0_ms
    kinds = (CRASH, SOS)
    session = 0
    while len(out) < count:
        out.extend(a for a in unit.handle(TriggerOn(kinds[session % 2]), now) if isinstance(a, Publish))
        session += 1
        while unit.sessions and len(out) < count:
            now += 1000
            fix = Fix(now, 481374000 + (now - t0_ms) // 100, 115754000, MODE_3D, 52000, 13000, 9000, 9, 90)
            actions: list[Any] = unit.handle(FixEvent(fix), now)
            timer = unit.next_timer()
            if timer is not None and timer <= now:
                actions += unit.handle(Tick(), now)
            out.extend(a for a in actions if isinstance(a, Publish))
    return out[:count]


def generate(path: str, count: int) -> int:
    outbox = Outbox(path, max_records=max(count, 10_000))
    try:
        boot = next_boot(path, outbox.max_boot())
        for action in crash_and_sos_uplinks(count):
            outbox.put(boot, action.seq, action.priority, action.located, action.payload)
        outbox.commit()
    finally:
        outbox.close()
    return boot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outbox_runner", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--unit", default="fault-unit")
    parser.add_argument("--generate", type=int, default=0, metavar="N")
    parser.add_argument("--rate", type=float, default=None, help="uplinks per second at most")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    try:
        if args.generate:
            boot = generate(args.outbox, args.generate)
            print("queued %d boot %d" % (args.generate, boot), flush=True)
        with DurableUplink(args.broker, args.unit, args.outbox, max_rate=args.rate) as uplink:
            recovered = uplink.outbox.recovery
            print("started pending %d boot %d%s" % (
                len(uplink.outbox), uplink.boot, "; " + recovered.describe() if recovered.cut_at is not None else ""),
                flush=True)
            uplink.drain(args.timeout)
            print("done published %d backlog %d acked %d" % (
                uplink.stats.published, uplink.stats.backlog, uplink.stats.acked), flush=True)
    except TcuError as err:
        print("outbox_runner: error: %s" % err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
