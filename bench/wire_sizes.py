"""Bytes on the wire: a single located report and a batch of tracking fixes, per trace,
beside the formats the field uses, generated for the same fixes (not quoted):

- OwnTracks JSON location (the fields its app sends), as published over MQTT;
- Teltonika Codec 8: one AVL record, and the smallest packet carrying it (preamble, length,
  codec, count, record, count, CRC);
- eCall MSD: 35-39 bytes measured on real MSDs (EN 15722, reference figure, not generated).

Run: python bench/wire_sizes.py [TRACE ...]   (default: the shared gpsd logs and the demo drive)
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from statistics import mean

from tcu.hal import iter_fixes
from tcu.protocol import messages

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces" / "gpsd"
BATCH = 30  # fixes per batch: one minute of crash tracking at 2 s


def owntracks(fix) -> int:
    doc = {"_type": "location", "tid": "tc", "lat": round(fix.lat_e7 / 1e7, 7), "lon": round(fix.lon_e7 / 1e7, 7),
           "tst": fix.time_ms // 1000, "vel": (fix.speed_mms or 0) * 36 // 10000,
           "cog": (fix.course_cdeg or 0) // 100,
           "alt": (fix.alt_cm or 0) // 100, "acc": 5, "batt": 100, "conn": "m", "t": "p",
           "created_at": fix.time_ms // 1000}
    return len(json.dumps(doc, separators=(",", ":")))


def teltonika_record(fix) -> bytes:
    gps = struct.pack(">iiHHBH", fix.lon_e7, fix.lat_e7, max(0, (fix.alt_cm or 0) // 100),
                      (fix.course_cdeg or 0) // 100, fix.sats or 0, (fix.speed_mms or 0) * 36 // 10000)
    io = bytes([0, 0, 0, 0, 0, 0])  # event id, total, and four empty groups (1, 2, 4, 8 bytes)
    return struct.pack(">QB", fix.time_ms, 0) + gps + io


def teltonika_packet(record: bytes) -> int:
    data = bytes([0x08, 1]) + record + bytes([1])
    return 4 + 4 + len(data) + 4


def rows(path: Path) -> tuple[str, int, float, float, float, int, int] | None:
    fixes = list(iter_fixes(str(path)))
    if len(fixes) < 2:
        return None
    t0 = fixes[0].time_ms // 1000
    tuples = [(f.time_ms // 1000 - t0, f.lat_e7, f.lon_e7, (f.speed_mms or 0) * 36 // 10000,
               ((f.course_cdeg or 0) + 100) // 200 % 180) for f in fixes]
    # A busy unit: sequence numbers in the thousands, the 5th session of the boot.
    singles = [len(messages.encode_report(1000 + i, 5, 2, *t)) for i, t in enumerate(tuples)]
    per_fix = []
    for start in range(0, len(tuples) - 1, BATCH):
        chunk = tuples[start:start + BATCH]
        if len(chunk) > 1:
            first = len(messages.encode_report(1000, 5, 2, *chunk[0]))
            per_fix.append((len(messages.encode_batch(1000, 5, 2, chunk)) - first) / (len(chunk) - 1))
    return (path.name, len(fixes), mean(singles), max(singles), mean(per_fix), owntracks(fixes[0]),
            len(teltonika_record(fixes[0])))


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(TRACES.glob("*.log")) + [REPO / "tools" / "data" / "demo-drive.log"]
    print("%-34s %6s %10s %9s %13s %10s %10s" % ("trace", "fixes", "report avg", "max", "batch B/fix",
                                                 "OwnTracks", "Teltonika"))
    table = [r for r in (rows(p) for p in paths) if r]
    for name, n, avg, top, per_fix, own, tel in table:
        print("%-34s %6d %10.1f %9d %13.2f %10d %10d" % (name, n, avg, top, per_fix, own, tel))
    weights = [r[1] for r in table]
    print("\nall traces, weighted by fixes: report %.1f B (max %d), batch %.2f B per fix" % (
        sum(r[2] * w for r, w in zip(table, weights, strict=True)) / sum(weights), max(r[3] for r in table),
        sum(r[4] * w for r, w in zip(table, weights, strict=True)) / sum(weights)))
    rec = table[0][6]
    print("reference, same fixes: OwnTracks JSON %d-%d B; Teltonika Codec 8 record %d B, packet %d B; "
          "eCall MSD 35-39 B (EN 15722, measured elsewhere)" % (
              min(r[5] for r in table), max(r[5] for r in table), rec, teltonika_packet(bytes(rec))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
