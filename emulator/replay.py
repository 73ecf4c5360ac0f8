"""Run the unit over a stream of fixes on a virtual clock.

The unit's monotonic clock is virtual: it starts at the trace's first receiver time and
advances by the receiver's elapsed time, fix to fix. Trigger windows and the unit's timers
fire at their exact times in between, so a day-long trace replays in seconds and the same
trace always gives the same uplinks. A receiver time that steps back, or forward by more
than hal.nmea.JUMP_MS (a spliced trace, a receiver reset, a week rollover), is a step, not
elapsed time: it is counted and the clock advances by one usual fix interval, so a step
neither stretches nor cuts a session. Wall time is the receiver's (GNSS) time, corrected
for week rollover (hal/gnss_time.py), passed with each fix.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tcu.firmware.clock import WallTime
from tcu.firmware.errors import UsageError
from tcu.firmware.events import FixEvent, Publish, Shutdown, Tick, TriggerOff, TriggerOn
from tcu.firmware.fix import Fix
from tcu.firmware.services import TRIGGER_NAMES, trigger_code
from tcu.firmware.unit import Unit
from tcu.hal.gnss_time import RolloverCorrector
from tcu.hal.nmea import JUMP_MS
from tcu.protocol.messages import TIME_GNSS

if TYPE_CHECKING:
    from tcu.hal.idle import Heartbeat

_TRIGGER_RE = re.compile(r"^([A-Za-z]+)@(\d+(?:\.\d+)?)(?:\+(\d+(?:\.\d+)?))?$")


@dataclass(frozen=True)
class TriggerWindow:
    """A trigger input held active from start_s for duration_s (None: to the end), in
    seconds from the trace's first fix."""

    kind: int
    start_s: float
    duration_s: float | None = None

    def __str__(self) -> str:
        return "%s@%g%s" % (TRIGGER_NAMES[self.kind], self.start_s,
                            "" if self.duration_s is None else "+%g" % self.duration_s)


def parse_trigger(text: str) -> TriggerWindow:
    """Parse KIND@START[+DURATION], e.g. 'theft@30+120' or 'crash@12.5'."""
    match = _TRIGGER_RE.match(text.strip())
    if not match:
        raise UsageError(
            "--trigger %r: expected KIND@START[+DURATION] in seconds from the first fix, "
            "e.g. crash@10 or theft@30+120" % text
        )
    kind, start, duration = match.groups()
    if duration is not None and float(duration) == 0:
        raise UsageError("--trigger %r: a window of +0 s never holds the input: give a duration above 0, "
                         "or none to hold it to the end" % text)
    return TriggerWindow(trigger_code(kind), float(start), None if duration is None else float(duration))


@dataclass
class ReplayStats:
    fixes: int = 0
    fixes_dropped: int = 0  # decoded while dormant (run()): dropped unread by the firmware
    dormant_seconds: int = 0  # receiver seconds while dormant (run_stream()): positions never decoded
    uplinks: int = 0
    located: int = 0
    first_fix_ms: int | None = None
    last_ms: int | None = None  # the virtual monotonic clock at the end
    steps_back: int = 0  # receiver time stepped back: not elapsed time
    steps_forward: int = 0  # ... or jumped forward by more than JUMP_MS
    rollovers: int = 0  # receiver times moved forward by 1024 weeks (hal/gnss_time.py)
    published: list[Publish] = field(default_factory=list, repr=False)
    late: list[TriggerWindow] = field(default_factory=list)  # started after the trace's end: never fired

    def span_s(self) -> float:
        """The trace's length from its first fix (0 without one)."""
        if self.first_fix_ms is None or self.last_ms is None:
            return 0.0
        return (self.last_ms - self.first_fix_ms) / 1000


ActionSink = Callable[[Any, int], None]


class SwitchableStream(Protocol):
    """What ``Replay.run_stream`` uses of a stream: both of hal's GNSS streams (``FixStream``,
    ``GpsdStream``) are one, and so is any stream with the same idle path (``positions_needed``
    False: no position is decoded and ``items()`` yields Heartbeats)."""

    @property
    def positions_needed(self) -> bool: ...

    @positions_needed.setter
    def positions_needed(self, needed: bool) -> None: ...

    def items(self) -> Iterator[Fix | Heartbeat]: ...


class Replay:
    """Drives a Unit with fixes and scheduled trigger inputs; actions go to `sink`."""

    def __init__(self, unit: Unit, windows: Iterable[TriggerWindow], sink: ActionSink) -> None:
        self.unit = unit
        self.windows = list(windows)
        self.sink = sink
        self.stats = ReplayStats()
        self._queue: list[tuple[int, int, Any]] = []
        self._now = 0
        self._receiver_ms: int | None = None  # the last receiver time seen
        self._interval_ms = 1000  # the usual fix interval: what a step advances the clock by
        self._rollover = RolloverCorrector()
        self._wall: tuple[WallTime, int] | None = None  # the last GNSS time, at its virtual time

    def clock(self, receiver_ms: int) -> int:
        """The virtual monotonic time of a receiver time: elapsed receiver time, steps excepted."""
        last = self._receiver_ms
        self._receiver_ms = receiver_ms
        if last is None:
            return self._now
        delta = receiver_ms - last
        if delta < 0:
            self.stats.steps_back += 1
            return self._now + self._interval_ms
        if delta > JUMP_MS:
            self.stats.steps_forward += 1
            return self._now + self._interval_ms
        if delta > 0:
            self._interval_ms = delta
        return self._now + delta

    def _wall_of(self, receiver_ms: int) -> WallTime:
        before = self._rollover.corrected
        wall = WallTime(self._rollover.correct(receiver_ms), TIME_GNSS)
        self.stats.rollovers += self._rollover.corrected - before
        return wall

    def run(self, fixes: Iterable[Fix]) -> ReplayStats:
        for fix in fixes:
            self.feed(fix)
        self.finish()
        return self.stats

    def run_stream(self, stream: SwitchableStream) -> ReplayStats:
        """Replay a hal stream (FixStream, GpsdStream) with the idle path: while no session is
        active the HAL parses no position at all, and its heartbeats (one per receiver second)
        only move the clock; a session switches positions on, and its first fix is the next epoch."""
        stream.positions_needed = bool(self.unit.sessions)
        for item in stream.items():
            if isinstance(item, Fix):
                self.feed(item)
            elif item.time_ms is not None and (self.stats.first_fix_ms is not None or item.has_fix):
                self.tick(item.time_ms, item.has_fix)
            stream.positions_needed = bool(self.unit.sessions)
        self.finish()
        return self.stats

    def tick(self, time_ms: int, has_fix: bool = True) -> None:
        """The receiver reported a second (no position read): trigger windows and timers due.
        Its time is wall time only with a fix (without one a receiver's clock may be unset)."""
        if self.stats.first_fix_ms is None:
            self._schedule(time_ms)
            self._now = time_ms
        now = self.clock(time_ms)
        if has_fix:
            self._wall = (self._wall_of(time_ms), now)
        self._advance(now)
        if not self.unit.sessions:
            self.stats.dormant_seconds += 1

    def feed(self, fix: Fix) -> None:
        if self.stats.first_fix_ms is None:
            self._schedule(fix.time_ms)
            self._now = fix.time_ms
        now = self.clock(fix.time_ms)
        self._wall = (self._wall_of(fix.time_ms), now)
        self._advance(now)
        self.stats.fixes += 1
        if not self.unit.sessions:
            self.stats.fixes_dropped += 1
        self._dispatch(FixEvent(fix), now)

    def finish(self) -> None:
        """End of trace: due inputs and timers fire, then the unit shuts down."""
        if self.stats.first_fix_ms is None:
            self.stats.late = list(self.windows)
            return
        self._advance(self._now)
        self.stats.late = [self.windows[order // 2] for _, order, event in sorted(self._queue)
                           if isinstance(event, TriggerOn)]
        self._dispatch(Shutdown(), self._now)

    def _schedule(self, t0_ms: int) -> None:
        self.stats.first_fix_ms = t0_ms
        for order, window in enumerate(self.windows):
            start = t0_ms + round(window.start_s * 1000)
            heapq.heappush(self._queue, (start, 2 * order, TriggerOn(window.kind)))
            if window.duration_s is not None:
                end = start + round(window.duration_s * 1000)
                heapq.heappush(self._queue, (end, 2 * order + 1, TriggerOff(window.kind)))

    def _advance(self, until_ms: int) -> None:
        while True:
            timer = self.unit.next_timer()
            queued = self._queue[0][0] if self._queue else None
            candidates = [t for t in (timer, queued) if t is not None]
            if not candidates or min(candidates) > until_ms:
                break
            due = min(candidates)
            if queued is not None and queued == due:
                _, _, event = heapq.heappop(self._queue)
                self._dispatch(event, max(self._now, due))
            else:
                self._dispatch(Tick(), max(self._now, due))
        self._now = max(self._now, until_ms)

    def _dispatch(self, event: Any, now_ms: int) -> None:
        wall = None
        if self._wall is not None:  # the receiver's time, carried to this event's virtual time
            reading, at = self._wall
            wall = WallTime(reading.ms + now_ms - at, reading.source)
        self._now = now_ms
        self.stats.last_ms = now_ms
        for action in self.unit.handle(event, now_ms, wall):
            if isinstance(action, Publish):
                self.stats.uplinks += 1
                self.stats.located += action.located
            self.sink(action, now_ms)


def late_report(stats: ReplayStats) -> str:
    """One line for the triggers that started after the trace's end ('' if none)."""
    if not stats.late:
        return ""
    return "%s never fired: %s after the end of the trace (%s); use a longer trace, an earlier START, " \
        "or --allow-late" % (
            " ".join(str(w) for w in stats.late), "it starts" if len(stats.late) == 1 else "they start",
            "%.0f s after its first fix" % stats.span_s() if stats.first_fix_ms is not None else "it has no fix")
