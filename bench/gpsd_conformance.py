"""Compare the HAL's fixes with gpsd's decoded output for every recorded receiver log.

For each NAME.log in the traces directory, the reference is NAME.log.chk: gpsd's TPV
reports that have a time, lat, lon and mode >= 2, keeping the last report of each time
(gpsd sends several TPVs per epoch as sentences arrive). The HAL's fixes are deduplicated
the same way (a log whose time goes backwards repeats times). A fix matches a report when
their times are equal modulo 1024 GPS weeks (gpsd shifts some old receivers' dates by one
week rollover) and lat and lon agree within 1e-6 degrees.

Columns: reports (gpsd epochs), fixes (ours, before deduplication), matched, missed
(reports without a matching fix), binary (missed reports of a log that has no NMEA
position sentence at all: gpsd decoded the receiver's binary protocol, which the HAL does
not), extra (fixes without a matching report), then the extras by kind, each a deliberate
difference explained in the README ("Differences from gpsd"):

* first: before gpsd's first report. gpsd reports an epoch when the sentence it has
  learnt ends the receiver's cycle arrives, and it has not learnt it yet;
* tail: after gpsd's last report, the log's last epoch: its cycle never ends for gpsd,
  the HAL flushes it at end of stream;
* cut: an epoch without the log's cycle-ending sentence type (the most common last
  sentence of an epoch), cut short by a log splice or a lost line;
* other: none of these (should be 0).

posdiff (same time, position differs; counted in both missed and extra) and modediff
(matched, but 2D/3D differs) are reported too. -v lists every extra, missed, posdiff and
modediff.

UBX logs: the corpus has none with position messages, so the UBX NAV-PVT logs of tests/data
(scripts/make_ubx_trace.py: ublox-8.log's epochs as UBX only, and mixed with its NMEA) are
scored too, against the real gpsd's TPVs (Debian's gpsd under gpsfake) since they have no .chk.

--gpsd runs every log through the real gpsd under gpsfake as well (tests/gpsd_harness.py), with
`tcu fixes gpsd://127.0.0.1:PORT --json` as a second client, and prints a second table: gpsd's
fixes (last TPV per time with mode >= 2), tcu's through gpsd, whether they are identical, and
how `tcu fixes LOG` compares with that live gpsd (matched, missed, extra). Slow (~5 s a log).

Usage: python bench/gpsd_conformance.py [TRACES_DIR] [-v] [--gpsd]
"""

from __future__ import annotations

import datetime
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tcu.firmware.errors import TcuError
from tcu.firmware.fix import Fix
from tcu.hal import iter_fixes
from tcu.hal.framer import NmeaFramer
from tcu.hal.pacer import sentence_tod
from tcu.hal.trace import TraceFile
from tcu.hal.ubx import UbxFramer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from gpsd_harness import have_gpsfake, run_log  # noqa: E402

TRACES = ROOT.parent / "shared" / "traces" / "gpsd"
UBX_LOGS = sorted((ROOT / "tests" / "data").glob("gnss-ubx-*.log"))
ROLLOVER_MS = 1024 * 7 * 86_400_000
TOLERANCE_E7 = 10  # 1e-6 degree
COLUMNS = ("reports", "fixes", "matched", "missed", "binary", "extra", "first", "tail", "cut", "other",
           "posdiff", "modediff")
_DAY_MS = 86_400_000


def epoch_types(log: Path) -> tuple[dict[int, set[str]], str | None]:
    """Sentence types of each epoch (by time of day), and the most common last one."""
    framer = NmeaFramer()
    epochs: dict[int, set[str]] = {}
    order: list[list[str]] = []
    current: list[str] | None = None
    current_tod: int | None = None
    with TraceFile(str(log)) as source:
        while chunk := source.read():
            for sentence in framer.feed(chunk):
                kind = sentence[1:6] if sentence[1] == "P" else sentence[3:6]
                tod = sentence_tod(sentence)
                if tod is not None and tod != current_tod:
                    current_tod, current = tod, []
                    order.append(current)
                    epochs.setdefault(tod, set())
                if current is not None and current_tod is not None:
                    current.append(kind)
                    epochs[current_tod].add(kind)
    enders = Counter(epoch[-1] for epoch in order if epoch).most_common(1)
    return epochs, enders[0][0] if enders else None


def parse_time(text: str) -> int:
    """ISO 8601 UTC ("2017-01-10T00:09:41.000Z") to Unix milliseconds."""
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(when.timestamp() * 1000)


def reference(chk: Path) -> dict[int, tuple[int, int, int]]:
    """gpsd's fixes by time modulo 1024 weeks: (lat_e7, lon_e7, mode), last TPV per time."""
    tpvs = []
    for line in chk.read_bytes().splitlines():
        if not line.startswith(b'{"class":"TPV"'):
            continue
        try:
            tpvs.append(json.loads(line))
        except ValueError:
            continue
    return reference_of(tpvs)


def reference_of(tpvs: list[dict[str, Any]]) -> dict[int, tuple[int, int, int]]:
    """``reference`` of TPVs read from a live gpsd."""
    out: dict[int, tuple[int, int, int]] = {}
    for tpv in tpvs:
        if tpv.get("mode", 0) < 2 or not {"time", "lat", "lon"} <= tpv.keys():
            continue
        key = parse_time(tpv["time"]) % ROLLOVER_MS
        out[key] = (round(tpv["lat"] * 1e7), round(tpv["lon"] * 1e7), tpv["mode"])
    return out


def has_ubx(log: Path) -> bool:
    framer = UbxFramer()
    with TraceFile(str(log)) as source:
        while chunk := source.read():
            if framer.feed(chunk):
                return True
    return False


def compare(log: Path, verbose: bool = False, ref: dict[int, tuple[int, int, int]] | None = None) -> dict[str, int]:
    """Row of the table for one log (against its .chk, or the live gpsd's ``ref``)."""
    if ref is None:
        ref = reference(Path(str(log) + ".chk"))
    row: dict[str, int] = dict.fromkeys(COLUMNS, 0)
    row["reports"] = len(ref)
    ours: dict[int, Fix] = {}
    for fix in iter_fixes(str(log)):
        row["fixes"] += 1
        ours[fix.time_ms % ROLLOVER_MS] = fix  # like gpsd's side: the last fix of a time
    matched: set[int] = set()
    first_report, last_report = min(ref, default=-1), max(ref, default=-1)
    epochs, ender = epoch_types(log)
    for key, fix in sorted(ours.items()):
        want = ref.get(key)
        if want is None:
            row["extra"] += 1
            types = epochs.get(fix.time_ms % _DAY_MS, set())
            kind = ("first" if key < first_report else "tail" if key > last_report
                    else "cut" if ender is not None and ender not in types else "other")
            row[kind] += 1
            if verbose:
                print("  extra  ", kind, log.name, fix)
            continue
        if abs(want[0] - fix.lat_e7) > TOLERANCE_E7 or abs(want[1] - fix.lon_e7) > TOLERANCE_E7:
            row["posdiff"] += 1
            row["extra"] += 1
            row["other"] += 1
            if verbose:
                print("  posdiff", log.name, fix, want)
            continue
        matched.add(key)
        row["matched"] += 1
        if want[2] != fix.mode:
            row["modediff"] += 1
            if verbose:
                print("  mode   ", log.name, fix, "gpsd mode", want[2])
    row["missed"] = row["reports"] - row["matched"]
    if not any(types & {"RMC", "GGA", "GNS", "GLL"} for types in epochs.values()) and not has_ubx(log):
        row["binary"] = row["missed"]
    if verbose:
        for key in sorted(set(ref) - matched):
            print("  missed ", log.name, key, ref[key])
    return row


def live(log: Path, verbose: bool) -> tuple[dict[str, int], dict[str, Any]]:
    """The log through the real gpsd: the row against its live TPVs, and the gpsd:// check."""
    run = run_log(log)
    ref = reference_of(run.gpsd_tpvs)
    via = reference_of([{**f, "mode": f["mode"]} for f in run.tcu_fixes])
    return compare(log, verbose, ref), {"gpsd": len(ref), "via_gpsd": len(via), "identical": via == ref}


def print_table(rows: list[tuple[str, dict[str, int]]], width: int) -> None:
    header = "%-*s " % (width, "log") + " ".join("%8s" % c for c in COLUMNS)
    print(header)
    print("-" * len(header))
    totals = dict.fromkeys(COLUMNS, 0)
    for name, row in rows:
        for c in COLUMNS:
            totals[c] += row[c]
        print("%-*s " % (width, name) + " ".join("%8d" % row[c] for c in COLUMNS))
    print("-" * len(header))
    print("%-*s " % (width, "TOTAL") + " ".join("%8d" % totals[c] for c in COLUMNS))


def main(argv: list[str]) -> int:
    verbose, with_gpsd = "-v" in argv, "--gpsd" in argv
    args = [a for a in argv if a not in ("-v", "--gpsd")]
    traces = Path(args[0]) if args else TRACES
    logs = sorted(p for p in traces.glob("*.log") if Path(str(p) + ".chk").exists())
    if not logs:
        print("no .log/.chk pairs in %s" % traces, file=sys.stderr)
        return 1
    skipped = sorted(p.name for p in traces.glob("*.log") if p not in logs)
    width = max(len(p.name) for p in logs + UBX_LOGS) + 7
    rows: list[tuple[str, dict[str, int]]] = []
    for log in logs:
        try:
            rows.append((log.name, compare(log, verbose)))
        except TcuError as exc:
            print("%-*s error: %s" % (width, log.name, exc))
    gpsd_ok = have_gpsfake()
    if gpsd_ok:
        for log in UBX_LOGS:  # no .chk: the reference is the real gpsd's TPVs on the same bytes
            rows.append((log.name + " (live)", live(log, verbose)[0]))
    print_table(rows, width)
    if skipped:
        print("skipped (no .chk): %s" % ", ".join(skipped))
    if not gpsd_ok:
        print("UBX logs not scored: gpsd and gpsfake are not installed")
    if with_gpsd and gpsd_ok:
        print("\nthe same logs through the real gpsd (gpsfake): tcu fixes LOG against gpsd's live TPVs")
        live_rows, checks = [], []
        for log in logs + UBX_LOGS:
            row, check = live(log, verbose)
            live_rows.append((log.name, row))
            checks.append((log.name, check))
        print_table(live_rows, width)
        same = sum(1 for _, c in checks if c["identical"])
        print("tcu fixes gpsd:// identical to gpsd's own fixes on %d of %d logs (%d gpsd fixes in all)" % (
            same, len(checks), sum(c["gpsd"] for _, c in checks)))
        for name, c in checks:
            if not c["identical"]:
                print("  differs: %s gpsd %d, via gpsd:// %d" % (name, c["gpsd"], c["via_gpsd"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
