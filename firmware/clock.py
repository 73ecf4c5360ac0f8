"""The unit's two clocks, both inputs: never read here.

Monotonic time (the `now_ms` of every Unit.handle call) measures how long: session bounds,
sampling periods, timers. It never steps. Wall time (a WallTime, passed alongside now when
the host learns it) says what time it is: report timestamps and command validity windows.
It comes from the GNSS receiver when it has a valid fix and date, else from the system
clock, which is trusted only when NTP has synchronised it. Between readings the unit
carries the last one forward on the monotonic clock, so a step of the system clock moves
timestamps (at the next reading) but never a bound.
"""

from ..protocol.messages import TIME_GNSS, TIME_NTP, TIME_SYSTEM

SOURCE_NAMES = {TIME_GNSS: "gnss", TIME_NTP: "ntp", TIME_SYSTEM: "system"}
TRUSTED_SOURCES = (TIME_GNSS, TIME_NTP)


class WallTime:
    """One wall-clock reading: Unix milliseconds and where they came from (TIME_*)."""

    __slots__ = ("ms", "source")

    def __init__(self, ms: int, source: int) -> None:
        if source not in SOURCE_NAMES:
            raise ValueError("unknown time source %r" % (source,))
        self.ms = ms
        self.source = source

    @property
    def trusted(self) -> bool:
        return self.source in TRUSTED_SOURCES


class WallClock:
    """The unit's wall time: the last reading, carried forward on the monotonic clock.

    Before any reading the unit knows nothing better than its monotonic clock: that is its
    wall time then, from an untrusted source (TIME_SYSTEM)."""

    __slots__ = ("_ms", "_at", "source")

    def __init__(self) -> None:
        self._ms = None  # type: int | None
        self._at = 0
        self.source = TIME_SYSTEM

    def update(self, wall: WallTime, now_ms: int) -> None:
        self._ms, self._at, self.source = wall.ms, now_ms, wall.source

    def now(self, now_ms: int) -> int:
        """Wall time (Unix ms) at monotonic time now_ms."""
        if self._ms is None:
            return now_ms
        return self._ms + (now_ms - self._at)

    @property
    def trusted(self) -> bool:
        return self.source in TRUSTED_SOURCES
