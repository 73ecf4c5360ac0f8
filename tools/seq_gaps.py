"""Gaps in a unit's uplinks. `seq` counts every uplink of one boot from 1 without a hole, so
a number that never arrived is an uplink lost between the unit and the backend (a broker that
dropped queued messages, an outbox that evicted) or still on its way. Tracked per (unit, boot)
as ranges, so a wild seq from the network costs two integers, not a set of millions."""

from __future__ import annotations

Range = tuple[int, int]  # inclusive


class SeqGaps:
    def __init__(self) -> None:
        self._high: dict[tuple[str, int], int] = {}
        self._missing: dict[tuple[str, int], list[Range]] = {}

    def add(self, unit: str, boot: int, seq: int) -> Range | None:
        """Record one seq; returns the range it newly shows to be missing (None if none)."""
        key = (unit, boot)
        high = self._high.get(key, 0)
        if seq > high:
            self._high[key] = seq
            if seq > high + 1:
                gap = (high + 1, seq - 1)
                self._missing.setdefault(key, []).append(gap)
                return gap
            return None
        ranges = self._missing.get(key, [])
        for i, (lo, hi) in enumerate(ranges):
            if lo <= seq <= hi:  # a late arrival fills part of a gap
                ranges[i:i + 1] = [r for r in ((lo, seq - 1), (seq + 1, hi)) if r[0] <= r[1]]
                break
        return None

    def missing(self, unit: str, boot: int) -> list[Range]:
        return list(self._missing.get((unit, boot), []))

    def all(self) -> dict[tuple[str, int], list[Range]]:
        return {key: list(r) for key, r in sorted(self._missing.items()) if r}


def count(ranges: list[Range]) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


def describe(ranges: list[Range]) -> str:
    return ", ".join(str(lo) if lo == hi else "%d-%d" % (lo, hi) for lo, hi in ranges)
