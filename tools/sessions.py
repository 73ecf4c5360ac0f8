"""The backend store read back as sessions: what `tcu backend sessions|export|plot|watch` show.

A session is identified by (unit, boot, sid). Its start message carries purpose, trigger and
start time; each located report carries its time as seconds since that start, so a report's
time is resolved when asked (the start may arrive after a report that overtook it). A report
that also serves overlapping sessions (EXT_SESSIONS) belongs to each of their tracks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tcu.firmware.errors import ProtocolError, UsageError
from tcu.firmware.services import TRIGGER_NAMES
from tcu.firmware.transitions import REASON_NAMES
from tcu.protocol import messages
from tcu.tools import store as tools_store
from tcu.tools.store import Store, store_errors
from tcu.tools.view import iso_utc, purpose_name

SessionKey = tuple[str, int, int]  # unit, boot, sid


@dataclass
class Point:
    """One located fix as the unit sent it: integers as on the wire (1e-7 degrees, km/h, 2-degree steps)."""

    dt: int
    lat_e7: int
    lon_e7: int
    sid: int  # the session the report was sent for (its purpose colours the plot)
    purpose: str | None
    speed_kmh: int | None = None
    course_2deg: int | None = None
    alt_m: int | None = None
    sats: int | None = None
    hdop: float | None = None
    mode: int | None = None
    serves: tuple[int, ...] = ()  # every session this fix served: its own and overlapping ones

    @property
    def lat(self) -> float:
        return self.lat_e7 / 1e7

    @property
    def lon(self) -> float:
        return self.lon_e7 / 1e7

    @property
    def speed_ms(self) -> float | None:
        return None if self.speed_kmh is None else round(self.speed_kmh / 3.6, 2)

    @property
    def course_deg(self) -> int | None:
        return None if self.course_2deg is None else self.course_2deg * 2


@dataclass
class Session:
    unit: str
    boot: int
    sid: int
    purpose: str | None = None
    trigger: str | None = None
    case: str | None = None
    start_s: int | None = None  # None: its start message is not in the store
    end_s: int | None = None  # None: still active (or its end is missing)
    reason: str | None = None
    test: bool = False  # a test call (crash or sos --test): never counted as a real emergency
    msds: list[bytes] = field(default_factory=list)  # the eCall MSDs its session starts carried, in order
    points: list[Point] = field(default_factory=list)
    _starts: dict[int, int] = field(default_factory=dict, repr=False)  # sid -> start, for shared reports

    @property
    def name(self) -> str:
        return "%s/%d/%d" % (self.unit, self.boot, self.sid)

    @property
    def emergency(self) -> bool:
        """A real emergency: a crash or SOS session that is not a test call."""
        return self.trigger in ("crash", "sos") and not self.test

    @property
    def state(self) -> str:
        if self.end_s is not None:
            state = "ended (%s)" % self.reason
        else:
            state = "active" if self.start_s is not None else "no start"
        return state + ", test call" if self.test else state

    def time_of(self, point: Point) -> int | None:
        """Unix seconds of a fix: its own session's start + dt (None if that start is unknown)."""
        start = self._starts.get(point.sid)
        return None if start is None else start + point.dt

    def summary(self) -> dict[str, object]:
        return {"unit": self.unit, "boot": self.boot, "session": self.sid, "purpose": self.purpose,
                "trigger": self.trigger, "case": self.case,
                "start": iso_utc(self.start_s) if self.start_s is not None else None,
                "end": iso_utc(self.end_s) if self.end_s is not None else None,
                "reports": len(self.points), "state": self.state, "test": self.test,
                "emergency": self.emergency, "msds": len(self.msds)}


class SessionBook:
    """Sessions built from stored uplinks, fed one payload at a time (any order)."""

    def __init__(self) -> None:
        self.sessions: dict[SessionKey, Session] = {}
        self._starts: dict[tuple[str, int], dict[int, int]] = {}  # (unit, boot) -> sid -> start time

    def _session(self, unit: str, boot: int, sid: int) -> Session:
        key = (unit, boot, sid)
        if key not in self.sessions:
            self.sessions[key] = Session(unit, boot, sid, _starts=self._starts.setdefault((unit, boot), {}))
        return self.sessions[key]

    def add(self, unit: str, boot: int, payload: bytes) -> list[Session]:
        """Apply one uplink; returns the sessions it changed (none for status or replies).
        A payload that does not decode raises ProtocolError."""
        msg = messages.decode(payload)
        if msg.type == messages.T_SESSION_START:
            session = self._session(unit, boot, msg.sid)
            session.purpose, session.start_s, session.case = purpose_name(msg.purpose), msg.time, msg.case
            session.trigger = TRIGGER_NAMES.get(msg.trigger or 0, str(msg.trigger))
            session._starts[msg.sid] = msg.time or 0
            session.test = session.test or msg.test
            if msg.msd is not None:  # rows come in seq order: the MSDs in the order they were sent
                session.msds.append(msg.msd)
            return [session]
        if msg.type == messages.T_SESSION_END:
            session = self._session(unit, boot, msg.sid)
            session.end_s, session.reason = msg.time, REASON_NAMES.get(msg.reason or 0, str(msg.reason))
            return [session]
        if msg.type not in (messages.T_REPORT, messages.T_BATCH):
            return []
        serves = tuple([msg.sid] + list(msg.ext.get(messages.EXT_SESSIONS, [])))
        points = list(_points(msg, serves))
        touched = [self._session(unit, boot, sid) for sid in serves]
        for session in touched:
            if session.purpose is None and session.sid == msg.sid:
                session.purpose = purpose_name(msg.purpose)
            session.points.extend(points)
        return touched

    def ordered(self) -> list[Session]:
        """Sessions by unit, boot, start; each one's points in time order."""
        for session in self.sessions.values():
            session.points.sort(key=lambda p: (session.time_of(p) or 0, p.dt))
        return sorted(self.sessions.values(), key=lambda s: (s.unit, s.boot, s.start_s or 0, s.sid))


def _points(msg: messages.Message, serves: tuple[int, ...]) -> Iterator[Point]:
    purpose = purpose_name(msg.purpose)
    if msg.type == messages.T_BATCH:
        for dt, lat, lon, speed, course in msg.fixes:
            yield Point(dt, lat, lon, msg.sid, purpose, speed, course, serves=serves)
        return
    assert msg.dt is not None and msg.lat_e7 is not None and msg.lon_e7 is not None
    ext = msg.ext
    hdop = ext.get(messages.EXT_HDOP_D)
    yield Point(msg.dt, msg.lat_e7, msg.lon_e7, msg.sid, purpose, msg.speed_kmh, msg.course_2deg,
                ext.get(messages.EXT_ALT_M), ext.get(messages.EXT_SATS), None if hdop is None else hdop / 10,
                ext.get(messages.EXT_MODE), serves)


def open_store(path: str) -> Store:
    """The backend's store (SQLite file or postgresql:// URL), read only; a missing or foreign
    one is a UsageError."""
    return tools_store.open_store(path)


def load_sessions(path: str, progress: Callable[[int, int], None] | None = None) -> list[Session]:
    """Every session in the store. progress(done, total) is called as rows are decoded."""
    book = SessionBook()
    with contextlib.closing(open_store(path)) as store, store_errors(path):
        total = store.count()
        for done, (unit, boot, payload) in enumerate(store.uplinks(), 1):
            try:
                book.add(unit, boot, payload)
            except ProtocolError:
                pass  # the backend stores only what decoded; a row that does not is not ours to show
            if progress is not None:
                progress(done, total)
    return book.ordered()


def select(sessions: list[Session], selector: str) -> Session:
    """The one session named by SID, UNIT/SID or UNIT/BOOT/SID; UsageError if none or several."""
    parts = selector.strip().split("/")
    try:
        sid = int(parts[-1])
        boot = int(parts[1]) if len(parts) == 3 else None
    except ValueError:
        raise UsageError("--session %r: expected SID, UNIT/SID or UNIT/BOOT/SID" % selector) from None
    if len(parts) > 3 or (len(parts) > 1 and not parts[0]):
        raise UsageError("--session %r: expected SID, UNIT/SID or UNIT/BOOT/SID" % selector)
    unit = parts[0] if len(parts) > 1 else None
    found = [s for s in sessions if s.sid == sid and unit in (None, s.unit) and boot in (None, s.boot)]
    if not found:
        raise UsageError("--session %s: no such session in the store (see tcu backend sessions)" % selector)
    if len(found) > 1:
        raise UsageError("--session %s is ambiguous: %s" % (selector, ", ".join(s.name for s in found)))
    return found[0]
