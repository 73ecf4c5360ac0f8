"""Tracks for a fleet: the traces decoded once per process, only when a first unit needs a
position, and each unit's view of one: shifted in time (its own start offset) and optionally
moved in space (a fixed offset of up to `spread_km`), so units do not all drive the same road
at the same second."""

from __future__ import annotations

import glob
import math
import os
import random

from tcu.firmware.errors import SourceError, UsageError
from tcu.firmware.fix import Fix

TRACE_PATTERNS = ("*.log", "*.nmea", "*.txt")


def trace_files(specs: list[str]) -> list[str]:
    """Every trace named by --traces: files, or the traces in a directory (UsageError if none)."""
    files: list[str] = []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(f for pattern in TRACE_PATTERNS for f in glob.glob(os.path.join(spec, pattern)))
            if not found:
                raise UsageError("--traces %s: no *.log, *.nmea or *.txt trace in this directory" % spec)
            files.extend(found)
        elif os.path.isfile(spec):
            files.append(spec)
        else:
            raise UsageError("--traces %s: no such file or directory" % spec)
    if not files:
        raise UsageError("--traces: name at least one trace file or directory")
    return files


class Tracks:
    """The decoded traces, shared by every unit of a process. A trace that yields no fix is
    skipped; if none yields one the first unit in a session raises SourceError naming them."""

    def __init__(self, files: list[str]) -> None:
        self.files = files
        self._tracks: list[list[Fix]] | None = None
        self.skipped: list[str] = []

    @property
    def decoded(self) -> bool:
        return self._tracks is not None

    def tracks(self) -> list[list[Fix]]:
        if self._tracks is None:
            from tcu.hal import iter_fixes

            tracks = []
            for path in self.files:
                try:
                    fixes = [item for item in iter_fixes(path) if isinstance(item, Fix)]
                except SourceError as err:
                    self.skipped.append("%s: %s" % (path, err))
                    continue
                if fixes:
                    tracks.append(fixes)
                else:
                    self.skipped.append("%s: no fix in it" % path)
            if not tracks:
                raise SourceError("--traces: no trace yields a fix (%s)" % "; ".join(self.skipped[:3]))
            self._tracks = tracks
        return self._tracks


class UnitTrack:
    """One unit's drive: which trace, from which fix, moved by how much. Picking costs nothing
    until the unit is in a session (no position is decoded for a dormant unit)."""

    __slots__ = ("seed", "spread_km", "_track", "_start", "_dlat", "_dlon")

    def __init__(self, seed: int, spread_km: float) -> None:
        self.seed = seed
        self.spread_km = spread_km
        self._track: list[Fix] | None = None
        self._start = 0
        self._dlat = 0
        self._dlon = 0

    def fix_at(self, tracks: Tracks, elapsed_s: int, now_ms: int) -> Fix:
        """The fix `elapsed_s` into the unit's drive, stamped `now_ms`."""
        if self._track is None:
            rng = random.Random(self.seed)
            pool = tracks.tracks()
            self._track = pool[rng.randrange(len(pool))]
            self._start = rng.randrange(len(self._track))
            if self.spread_km:
                distance = self.spread_km * math.sqrt(rng.random())
                bearing = rng.random() * 2 * math.pi
                self._dlat = int(distance / 111.32 * math.cos(bearing) * 1e7)
                lat = self._track[0].lat_e7 / 1e7
                self._dlon = int(distance / (111.32 * max(0.01, math.cos(math.radians(lat)))) * math.sin(bearing) * 1e7)
        base = self._track[(self._start + elapsed_s) % len(self._track)]
        lat = max(-900_000_000, min(900_000_000, base.lat_e7 + self._dlat))
        lon = (base.lon_e7 + self._dlon + 1_800_000_000) % 3_600_000_000 - 1_800_000_000
        return Fix(now_ms, lat, lon, base.mode, base.alt_cm, base.speed_mms, base.course_cdeg, base.sats, base.hdop_c)
