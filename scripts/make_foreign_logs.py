"""Write the foreign-framing test logs of tests/data/ (gnss-*) from a gpsd corpus excerpt.

* gnss-android.txt: Android GNSS Logger lines (``NMEA,<sentence>,<unix ms>``) with its header
  comments and Fix/Status lines, from 48 epochs of ublox-8.log's RMC and GGA;
* gnss-utf16-bom.log / gnss-utf16-nobom.log: the same NMEA as UTF-16 (LE with a BOM; BE without);
* gnss-cr.log: the same NMEA with CR line ends only;
* gnss-undated.log: GGA only (no RMC, no ZDA): positions that no date places in time.

Usage: python scripts/make_foreign_logs.py [TRACES_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "traces" / "gpsd"
SOURCE = "ublox-8.log"
EPOCHS = 48


def excerpt(traces: Path) -> list[str]:
    """The RMC and GGA sentences of the first EPOCHS epochs that have both."""
    lines = [line.strip() for line in (traces / SOURCE).read_text("ascii", "replace").splitlines()]
    out: list[str] = []
    rmcs = 0
    for line in lines:
        if line[3:6] in ("RMC", "GGA") and line.startswith("$"):
            if line[3:6] == "RMC":
                rmcs += 1
                if rmcs > EPOCHS:
                    break
            out.append(line)
    return out


def main(argv: list[str]) -> int:
    traces = Path(argv[0]) if argv else TRACES
    nmea = excerpt(traces)
    data = ROOT / "tests" / "data"
    note = "# %d epochs of %s (gpsd corpus, BSD-2-Clause), scripts/make_foreign_logs.py\r\n" % (EPOCHS, SOURCE)
    text = note + "".join(line + "\r\n" for line in nmea)
    android = ["# Version: v3.0.5.6 Platform: 13 Manufacturer: Google Model: Pixel 7",
               "# Fix,Provider,LatitudeDegrees,LongitudeDegrees,AltitudeMeters,SpeedMps,UnixTimeMillis",
               "# NMEA,NMEA,UnixTimeMillis", "#"]
    stamp = 1699400577561
    for n, line in enumerate(nmea):
        android.append("NMEA,%s,%d" % (line, stamp + n * 500))
        if line[3:6] == "GGA":
            android.append("Status,%d,12,3,1,1575420000,27.3,45.0,120.0,1,1,1,29.0" % (stamp + n * 500))
    (data / "gnss-android.txt").write_text("\n".join(android) + "\n", "ascii")
    (data / "gnss-utf16-bom.log").write_bytes(text.encode("utf-16"))  # BOM, native (LE) order
    (data / "gnss-utf16-nobom.log").write_bytes(text.encode("utf-16-be"))
    (data / "gnss-cr.log").write_bytes(text.replace("\r\n", "\r").encode("ascii"))
    undated = note + "".join(line + "\r\n" for line in nmea if line[3:6] == "GGA")
    (data / "gnss-undated.log").write_text(undated, "ascii")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
