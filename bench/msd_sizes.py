"""eCall MSD sizes per session kind, beside EN 15722's 140-byte limit: the real unit (firmware
Unit with the asn1tools encoder) on the demo drive, a trigger at its first fix, then a signed-
command-style resend after two more samples (recent positions N-1, N-2 present).

Run: python bench/msd_sizes.py            markdown rows for the README's wire size table
     python bench/msd_sizes.py --readme   rewrite those rows in README.md (between the msd-sizes markers)
"""

from __future__ import annotations

import sys
from pathlib import Path

from tcu.emulator import msd
from tcu.firmware import services as sv
from tcu.firmware.events import FixEvent, TriggerOn
from tcu.firmware.unit import Unit
from tcu.hal import iter_fixes
from tcu.protocol import messages

REPO = Path(__file__).resolve().parents[1]
DRIVE = REPO / "tools" / "data" / "demo-drive.log"
BEGIN, END = "<!-- msd-sizes:begin (python bench/msd_sizes.py --readme) -->", "<!-- msd-sizes:end -->"
KINDS = (("crash", sv.CRASH, False), ("crash, test call", sv.CRASH, True), ("sos", sv.SOS, False))


def sizes(kind: int, test: bool, vehicle: msd.Vehicle) -> tuple[int, int, int, int]:
    """(first MSD, its session start, resent MSD with N-1 and N-2, its session start) in bytes."""
    unit = Unit(msd_encoder=msd.encoder_for(vehicle))
    starts: list[tuple[messages.Message, int]] = []
    fixes = iter(iter_fixes(str(DRIVE)))
    first = next(fixes)
    unit.handle(TriggerOn(kind, test), first.time_ms - 500)
    for fix in [first] + [next(fixes) for _ in range(20)]:
        for action in unit.handle(FixEvent(fix), fix.time_ms):
            if getattr(action, "payload", None):
                msg = messages.decode(action.payload)
                if msg.type == messages.T_SESSION_START and msg.msd is not None:
                    starts.append((msg, len(action.payload)))
        session = next(iter(unit.sessions.values()))
        if len(session.sampled) == 3:
            break
    start, first_start = starts[0]
    sid = start.sid
    session = next(s for s in unit.sessions.values() if s.sid == sid)
    actions: list = []
    unit._send_msd(session, actions)  # what a send-msd command does
    resent = messages.decode(actions[0].payload)
    assert resent.msd is not None and start.msd is not None
    return len(start.msd), first_start, len(resent.msd), len(actions[0].payload)


def rows() -> list[str]:
    vehicle = msd.Vehicle(passengers=2)
    out = ["| eCall MSD (crash and SOS) | carried in | size (limit %d B) |" % msd.MAX_MSD_BYTES, "|---|---|---|"]
    for name, kind, test in KINDS:
        first, first_start, resent, resent_start = sizes(kind, test, vehicle)
        out.append("| %s | EN 15722 v2, UPER, in the session start's `{1: msd%s}` | %d B first (no "
                   "recent positions), %d B with N-1, N-2; session start %d / %d B |"
                   % (name, ", 2: true" if test else "", first, resent, first_start, resent_start))
    return out


def main(argv: list[str]) -> int:
    lines = rows()
    if "--readme" in argv:
        readme = REPO / "README.md"
        text = readme.read_text()
        head, rest = text.split(BEGIN + "\n", 1)
        _, tail = rest.split(END, 1)
        readme.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
