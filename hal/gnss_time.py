"""GNSS week rollover: a receiver's date more than 1024 weeks before a known-good epoch.

GPS broadcasts its week number in 10 bits, so receivers whose firmware predates a rollover
(1999-08-22, 2019-04-07) report dates 1024 weeks (19.6 years) in the past. As gpsd does with
its build date, a date more than 1024 weeks before the known-good epoch (the unit can
never run before it) is moved forward by 1024 weeks, as many times as needed, and counted.
"""

from __future__ import annotations

import datetime

ROLLOVER_MS = 1024 * 7 * 86_400_000
# The known-good epoch: this release's date. Nothing the unit runs on is older.
KNOWN_GOOD_EPOCH_MS = int(datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC).timestamp() * 1000)


class RolloverCorrector:
    """correct(time_ms) -> time_ms, moved forward by whole rollovers when too old; counts them."""

    def __init__(self, epoch_ms: int = KNOWN_GOOD_EPOCH_MS) -> None:
        self.epoch_ms = epoch_ms
        self.corrected = 0  # times corrected

    def correct(self, time_ms: int) -> int:
        floor = self.epoch_ms - ROLLOVER_MS
        if time_ms >= floor:
            return time_ms
        self.corrected += 1
        return time_ms + ((floor - time_ms) // ROLLOVER_MS + 1) * ROLLOVER_MS
