"""Make tests/data/traces: the recorded gpsd logs the tests need, so a clone tests by itself.

The full corpus is gpsd's regression logs (test/daemon/ in https://gitlab.com/gpsd/gpsd,
BSD-2-Clause), kept beside the repository at ../shared/traces/gpsd. This copies the logs that
tests name, whole, and cuts the large ones to their start: a prefix of the log (the comment
header and the first epochs, or the first bytes of a binary log) and, where a test compares it
with gpsd, the same prefix of gpsd's `.chk` (up to the first echo of a sentence the excerpt no
longer has). Every shipped file is a byte-for-byte prefix of the corpus's file of the same
name; tests/test_trace_subset.py checks that and the table in tests/data/traces/README.md.

Usage: python scripts/make_trace_subset.py [CORPUS_DIR]   (default ../shared/traces/gpsd)
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "traces" / "gpsd"
OUT = REPO / "tests" / "data" / "traces"

# Whole logs, with gpsd's .chk where a test compares against it; then excerpts, name: (cut, count,
# with .chk): ("$GPGGA", K) the comment header and the first K epochs, an epoch starting at that
# sentence; ("bytes", N) the lines that fit in the first N bytes.
WHOLE_CHK = ["ublox-8.log", "bu353s4.log", "quectel-L70.log", "garmin25lp.log", "nmea-fuzzy-cases.log",
             "mtk-3301.log", "firefly-II.log"]
WHOLE = ["ac12_binary.log", "gp-320fw-2019-04-07-coldboot.log", "iTrek.log", "quectel-l76k-dual.log",
         "ublox-zed-f9p-nmea.log"]
EXCERPTS: dict[str, tuple[str, int, bool]] = {
    "skytraq-dgps.log": ("$GPGGA", 20, True),
    "quectel-l76k-nmea.log": ("$GNRMC", 30, False),
    "ublox-zed-f9p_hpg1.11.log": ("bytes", 195_000, False),
}


def epoch_prefix(data: bytes, start: bytes, epochs: int) -> bytes:
    """The comment header and the first `epochs` epochs, cut before the next epoch's `start`."""
    lines = data.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(start + b",")]
    return b"".join(lines[:starts[epochs]]) if len(starts) > epochs else data


def byte_prefix(data: bytes, size: int) -> bytes:
    return data[:data.rindex(b"\n", 0, size) + 1] if len(data) > size else data


def chk_prefix(log: bytes, chk: bytes) -> bytes:
    """gpsd's output up to the echo of the first sentence after the excerpt `log`: gpsd echoes
    the sentences it accepts in order, so walk both and cut where the excerpt's run out."""
    kept = [line.rstrip(b"\r\n") for line in log.splitlines() if line[:1] in (b"$", b"!")]
    out = chk.splitlines(keepends=True)
    i = 0
    for n, line in enumerate(out):
        if line[:1] not in (b"$", b"!"):
            continue
        body = line.rstrip(b"\r\n")
        while i < len(kept) and kept[i] != body:
            i += 1  # a sentence gpsd rejected: not echoed
        if i == len(kept):
            return b"".join(out[:n])
        i += 1
    return chk


def excerpt(data: bytes, cut: tuple[str, int]) -> bytes:
    kind, amount = cut
    return byte_prefix(data, amount) if kind == "bytes" else epoch_prefix(data, kind.encode(), amount)


def write(corpus: Path, out: Path = OUT) -> list[str]:
    """Write the subset into `out`; returns the rows of its README's table."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(corpus / "COPYING", out / "COPYING")
    rows = []
    plan = [(name, None, True) for name in WHOLE_CHK] + [(name, None, False) for name in WHOLE] + [
        (name, (kind, amount), chk) for name, (kind, amount, chk) in EXCERPTS.items()]
    for name, cut, with_chk in sorted(plan):
        data = (corpus / name).read_bytes()
        kept = data if cut is None else excerpt(data, cut)
        (out / name).write_bytes(kept)
        files = [name]
        if with_chk:
            chk = (corpus / (name + ".chk")).read_bytes()
            (out / (name + ".chk")).write_bytes(chk if cut is None else chk_prefix(kept, chk))
            files.append(name + ".chk")
        what = "whole" if cut is None else "first %d of %d bytes" % (len(kept), len(data))
        rows.append("| %s | %s | %s |" % (" + ".join("`%s`" % f for f in files), what,
                                          hashlib.sha256(data).hexdigest()[:16]))
    return rows


def main(argv: list[str]) -> int:
    corpus = Path(argv[0]) if argv else CORPUS
    if not (corpus / "COPYING").is_file():
        print("make_trace_subset: no gpsd corpus at %s (its COPYING is missing)" % corpus, file=sys.stderr)
        return 2
    rows = write(corpus)
    shipped = [p for p in OUT.iterdir() if p.name != "README.md"]
    print("\n".join(rows))
    print("%s: %d files, %d bytes (README.md aside)" % (OUT.relative_to(REPO), len(shipped),
                                                        sum(p.stat().st_size for p in shipped)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
