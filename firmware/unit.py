"""The telematics unit's core: events and `now` in, actions out. No I/O, no clock.

Location is sampled only inside an active session; a fix that arrives while no session is
active is dropped before anything reads its position. Session transitions come from
transitions.TABLE; this module only applies their effects.

Two clocks (firmware/clock.py): `now_ms` is monotonic and measures every bound, period and
timer; wall time, passed as a WallTime when the host knows it, only stamps messages and
checks command validity windows. A step of the wall clock moves neither.
"""

from ..protocol import commands as cmd
from ..protocol import messages
from . import transitions as tr
from .clock import WallClock
from .errors import TcuError, UsageError
from .events import (
    Cancel,
    Downlink,
    FixEvent,
    Indicator,
    PersistCounter,
    Publish,
    Shutdown,
    Tick,
    TriggerOff,
    TriggerOn,
)
from .msd import MsdValues, can_be_trusted
from .services import CRASH, F_ALTITUDE, F_MOTION, F_QUALITY, LAWFUL, REMOTE, SOS, STOLEN, default_services

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..protocol.commands import Command, CommandVerifier
    from .clock import WallTime
    from .fix import Fix
    from .services import Service


class Refused(TcuError):
    """The unit refuses a request by policy (e.g. the occupant cancelling a crash session)."""


MSD_TRIGGERS = (CRASH, SOS)  # the emergency calls: an eCall MSD rides in their session start


class Session:
    """start_ms, end_ms, next_due_ms: monotonic. start_wall_ms, source: its start's wall time."""

    __slots__ = ("sid", "service", "state", "start_ms", "end_ms", "next_due_ms", "samples", "test",
                 "sampled", "msd_values", "msd", "start_wall_ms", "source", "window", "grid_ms")

    def __init__(self, sid: int, service: "Service", state: str, start_ms: int, end_ms: int, start_wall_ms: int,
                 source: int, test: bool = False) -> None:
        self.sid = sid
        self.service = service
        self.state = state
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.next_due_ms = start_ms  # the next point of the session's own sampling grid
        self.grid_ms = None  # type: int | None  # the grid's origin: its first sample
        self.samples = 0  # the samples it asked for (on its grid), whoever else shared them
        self.start_wall_ms = start_wall_ms
        self.source = source
        # Started on untrusted time: (received at, monotonic ms; not_before; not_after; until),
        # checked once the time is trusted; until then the session samples nothing.
        self.window = None  # type: tuple[int, int, int, int] | None
        self.test = test
        self.sampled = []  # type: list[Fix]  # MSD sessions: its last 3 sampled fixes, newest first
        self.msd_values = None  # type: MsdValues | None  # the last MSD's values
        self.msd = None  # type: bytes | None  # ... and its bytes (for the SMS fallback)


class Unit:
    """One unit for one boot. Feed it events with `handle(event, now_ms)`."""

    __slots__ = ("services", "sessions", "_next_sid", "_next_seq", "indicator", "verifier",
                 "command_counter", "status_interval_s", "msd_encoder", "clock", "_last_fix_ms")

    def __init__(self, services: "dict[int, Service] | None" = None,
                 verifier: "CommandVerifier | None" = None, command_counter: int = 0,
                 msd_encoder: "Callable[[MsdValues], bytes] | None" = None) -> None:
        """msd_encoder: the host's eCall MSD encoder (emulator/msd.py); None sends no MSD."""
        self.msd_encoder = msd_encoder
        self.services = services if services is not None else default_services()
        self.sessions = {}  # type: dict[int, Session]  # by trigger kind
        self._next_sid = 1
        self._next_seq = 1
        self.indicator = False
        self.verifier = verifier  # None: the unit accepts no downlink command at all
        self.command_counter = command_counter  # the last accepted, persisted by the host
        self.status_interval_s = 300
        self.clock = WallClock()
        self._last_fix_ms = None  # type: int | None  # monotonic: the fix interval sets the grid tolerance

    def next_timer(self) -> "int | None":
        """When the unit next needs a Tick (ms), or None while dormant."""
        if not self.sessions:
            return None
        return min(s.end_ms for s in self.sessions.values())

    def handle(self, event: "Any", now_ms: int, wall: "WallTime | None" = None) -> "list[Any]":
        """now_ms: monotonic milliseconds. wall: the wall time now, if the host knows it
        (otherwise the last one, carried forward on the monotonic clock)."""
        actions = []  # type: list[Any]
        if wall is not None:
            self.clock.update(wall, now_ms)
            if wall.trusted:
                self._check_windows(now_ms, actions)
        if isinstance(event, FixEvent):
            if self.sessions:  # dormant: the fix is dropped unread
                self._sample(event.fix, now_ms, actions)
        elif isinstance(event, Tick):
            for session in self._by_priority():
                if session.end_ms <= now_ms:
                    self._input(session.service, tr.TIME_UP, now_ms, actions)
        elif isinstance(event, (TriggerOn, TriggerOff, Cancel)):
            service = self._service(event.kind)
            if service.mode == REMOTE:  # only a verified command starts or ends these
                raise Refused("%s: no local input or occupant can start or end it, only an authenticated "
                              "backend command" % service.name)
            test = isinstance(event, TriggerOn) and event.test
            self._input(service, _INPUT_OF[type(event)], now_ms, actions, test=test)
        elif isinstance(event, Downlink):
            self._command(event.payload, now_ms, actions)
        elif isinstance(event, Shutdown):
            for session in self._by_priority():
                self._input(session.service, tr.SHUTDOWN, now_ms, actions)
        else:
            raise UsageError("unknown event %r" % (event,))
        self._update_indicator(actions)
        return actions

    def _service(self, kind: int) -> "Service":
        service = self.services.get(kind)
        if service is None:
            raise UsageError("no service is configured for trigger %d" % kind)
        return service

    def _by_priority(self) -> "list[Session]":
        return sorted(self.sessions.values(), key=lambda s: (s.service.priority, s.sid))

    def _input(self, service: "Service", event: str, now_ms: int, actions: "list[Any]",
               until_ms: "int | None" = None, case: "str | None" = None, test: bool = False) -> None:
        session = self.sessions.get(service.trigger)
        state = session.state if session else tr.IDLE
        effect, next_state = tr.step(service.mode, service.occupant_can_cancel, state, event)
        if effect == tr.START:
            bound_ms = now_ms + service.bound_s * 1000
            end_ms = bound_ms if until_ms is None else min(until_ms, bound_ms)
            self._start(service, next_state, now_ms, end_ms, case, actions, test)
        elif effect == tr.END and session is not None:
            self._end(session, tr.END_REASON_OF_INPUT[event], now_ms, actions)
        elif effect == tr.REFUSE:
            if session is None:
                raise Refused("%s: no session to cancel" % service.name)
            who = "the occupant" if event == tr.CANCEL else "the backend"
            raise Refused("%s: %s cannot cancel this session" % (service.name, who))
        elif session is not None:
            session.state = next_state

    def _start(self, service: "Service", state: str, now_ms: int, end_ms: int, case: "str | None",
               actions: "list[Any]", test: bool = False) -> None:
        start_wall_ms, source = self.clock.now(now_ms), self.clock.source
        start_s = start_wall_ms // 1000
        session = Session(self._next_sid, service, state, now_ms, end_ms, start_wall_ms, source, test)
        self._next_sid += 1
        self.sessions[service.trigger] = session
        seq = self._seq()
        payload = messages.encode_session_start(
            seq, session.sid, service.purpose, start_s, service.trigger, case, test=test, time_source=source)
        actions.append(Publish(payload, service.priority, session.sid, seq, False))

    def _send_msd(self, session: Session, actions: "list[Any]") -> None:
        """The session start again, with an MSD from the session's latest sampled fix and the two
        before it (recentVehicleLocationN1, N2); each one raises the message identifier."""
        if self.msd_encoder is None or not session.sampled:
            return
        previous = session.msd_values.message_id if session.msd_values is not None else 0
        values = MsdValues(previous + 1, session.service.trigger == CRASH, session.test,
                           session.sampled[0], session.sampled[1:])
        session.msd_values, session.msd = values, self.msd_encoder(values)
        seq = self._seq()
        service = session.service
        payload = messages.encode_session_start(seq, session.sid, service.purpose, session.start_wall_ms // 1000,
                                                service.trigger, None, session.msd, session.test, session.source)
        actions.append(Publish(payload, service.priority, session.sid, seq, True))

    def session_msd(self, sid: int) -> "bytes | None":
        """The last MSD an active session sent (for the SMS fallback), or None."""
        for session in self.sessions.values():
            if session.sid == sid:
                return session.msd
        return None

    def _end(self, session: Session, reason: int, now_ms: int, actions: "list[Any]") -> None:
        del self.sessions[session.service.trigger]  # the session, and all it held, is gone
        seq = self._seq()
        payload = messages.encode_session_end(seq, session.sid, self.clock.now(now_ms) // 1000, reason,
                                              self.clock.source)
        actions.append(Publish(payload, session.service.priority, session.sid, seq, False))

    def _sample(self, fix: "Fix", now_ms: int, actions: "list[Any]") -> None:
        """Each session samples on its own grid (first sample + k * period), a fix within half a
        fix interval of a grid point counting as on it. When any session is due, one report
        serves every due session: named after the highest-priority one, listing the others,
        with the union of their fields; each counts it against its own sample bound. A session
        that is not due neither shares the report nor counts it."""
        interval = 0 if self._last_fix_ms is None else now_ms - self._last_fix_ms
        self._last_fix_ms = now_ms
        due = []  # type: list[Session]
        for session in self._by_priority():
            if now_ms < session.end_ms and session.window is None \
                    and now_ms >= session.next_due_ms - _tolerance(session, interval):
                due.append(session)
        if not due:
            return
        for session in due:
            if session.service.trigger in MSD_TRIGGERS:
                untrusted = session.msd_values is not None and not session.msd_values.trusted
                session.sampled = [fix] + session.sampled[:2]
                if session.msd_values is None or (untrusted and can_be_trusted(fix)):
                    self._send_msd(session, actions)  # the first MSD, or a trusted one after an untrusted
        lead = due[0]
        seq = self._seq()
        payload = _report(seq, lead, [s.sid for s in due[1:]], fix, _union_fields(due),
                          _dt(lead, now_ms, self.clock.now(now_ms)))
        actions.append(Publish(payload, lead.service.priority, lead.sid, seq, True))
        for session in due:
            session.samples += 1
            if session.grid_ms is None:
                session.grid_ms = now_ms
            session.next_due_ms = _next_grid_point(session, now_ms + _tolerance(session, interval))
            if session.samples >= session.service.max_samples:
                self._input(session.service, tr.SAMPLES_DONE, now_ms, actions)

    def _command(self, payload: bytes, now_ms: int, actions: "list[Any]") -> None:
        """Verify, then carry out, one downlink command; a refused one changes nothing.
        Its validity window is checked against wall time only when that time is trusted."""
        trusted = self.clock.trusted
        try:
            if self.verifier is None:
                raise cmd.CommandRejected(cmd.R_UNAUTHENTIC, "this unit accepts no commands")
            wall_s = self.clock.now(now_ms) // 1000 if trusted else None
            command = self.verifier.verify(payload, wall_s, self.command_counter)
        except cmd.CommandRejected as err:
            self._respond(err.counter, messages.RESULT_REJECTED, err.reason, actions)
            return
        self.command_counter = command.counter
        actions.append(PersistCounter(command.counter))  # before any effect: never replayable
        try:
            sid = self._execute(command, now_ms, actions)
        except Refused:
            self._respond(command.counter, messages.RESULT_REJECTED, cmd.R_POLICY, actions)
            return
        result = messages.RESULT_ACCEPTED if trusted else messages.RESULT_PROVISIONAL
        self._respond(command.counter, result, sid, actions)

    def _execute(self, command: "Command", now_ms: int, actions: "list[Any]") -> int:
        """Carry out an authentic command; the session it concerns (0: none), or Refused."""
        if command.code in (cmd.CMD_TRACK_STOLEN, cmd.CMD_LAWFUL_REQUEST):
            return self._track(command, now_ms, actions)
        if command.code == cmd.CMD_CONFIGURE:
            self.status_interval_s = command.args[cmd.ARG_STATUS_INTERVAL]
            return 0
        sid = command.args[cmd.ARG_SESSION]
        session = self._session_by_id(sid)
        if command.code == cmd.CMD_LOCATE_NOW:
            session.next_due_ms = now_ms
        elif command.code == cmd.CMD_SEND_MSD:
            if session.msd_values is None:
                raise Refused("session %d has no MSD to resend (not an emergency call, or no fix yet)" % sid)
            self._send_msd(session, actions)
        elif session.service.mode != REMOTE:
            raise Refused("the backend ends only the sessions it started")
        else:
            self._input(session.service, tr.REMOTE_CANCEL, now_ms, actions)
        return session.sid

    def _track(self, command: "Command", now_ms: int, actions: "list[Any]") -> int:
        """Start (or renew) backend-requested tracking until the command's `until`.

        On trusted time, `until` is placed on the monotonic clock by the wall time now. On
        untrusted time the unit takes the command as received at the last moment of its
        window (not_after): tracking lasts until - not_after at most, and samples nothing
        until trusted time shows when it really was received (_check_windows)."""
        service = self._service(STOLEN if command.code == cmd.CMD_TRACK_STOLEN else LAWFUL)
        until_s = command.args[cmd.ARG_UNTIL]
        window = None  # type: tuple[int, int, int, int] | None
        if self.clock.trusted:
            until_ms = now_ms + until_s * 1000 - self.clock.now(now_ms)
        else:
            until_ms = now_ms + (until_s - command.not_after) * 1000
            window = (now_ms, command.not_before, command.not_after, until_s)
        if until_ms <= now_ms:
            raise Refused("tracking would end before it starts")
        session = self.sessions.get(service.trigger)
        if session is not None:  # a renewed request extends the running session
            session.end_ms = min(until_ms, session.start_ms + service.bound_s * 1000)
            session.window = window
            return session.sid
        self._input(service, tr.ON, now_ms, actions, until_ms, command.args[cmd.ARG_CASE])
        session = self.sessions[service.trigger]
        session.window = window
        return session.sid

    def _check_windows(self, now_ms: int, actions: "list[Any]") -> None:
        """The time just became trusted: check each command accepted on untrusted time
        against its window at the moment it was received; end its session if it fails,
        else place its `until` on the monotonic clock."""
        wall_ms = self.clock.now(now_ms)
        for session in self._by_priority():
            if session.window is None:
                continue
            received_ms, not_before, not_after, until_s = session.window
            received_s = (wall_ms - (now_ms - received_ms)) // 1000
            if not not_before <= received_s <= not_after:
                self._input(session.service, tr.WINDOW_FAILED, now_ms, actions)
                continue
            session.window = None
            until_ms = now_ms + until_s * 1000 - wall_ms
            session.end_ms = min(until_ms, session.start_ms + session.service.bound_s * 1000)
            if session.end_ms <= now_ms:
                self._input(session.service, tr.TIME_UP, now_ms, actions)

    def _session_by_id(self, sid: int) -> Session:
        for session in self.sessions.values():
            if session.sid == sid:
                return session
        raise Refused("no active session %d" % sid)

    def _respond(self, counter: int, result: int, detail: int, actions: "list[Any]") -> None:
        seq = self._seq()
        payload = messages.encode_command_response(seq, counter, result, detail)
        actions.append(Publish(payload, 1, 0, seq, False))

    def _seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _update_indicator(self, actions: "list[Any]") -> None:
        on = bool(self.sessions)
        if on != self.indicator:
            self.indicator = on
            actions.append(Indicator(on))


_INPUT_OF = {TriggerOn: tr.ON, TriggerOff: tr.OFF, Cancel: tr.CANCEL}


def _union_fields(sessions: "list[Session]") -> int:
    fields = 0
    for session in sessions:
        fields |= session.service.fields
    return fields


def _tolerance(session: Session, interval_ms: int) -> int:
    """How early a fix may come and still count as on a grid point: half a fix interval
    (so a 1 Hz receiver serves a 2 s period every 2 s), at most half the period."""
    return min(interval_ms, session.service.period_s * 1000) // 2


def _next_grid_point(session: Session, after_ms: int) -> int:
    """The session's first grid point after after_ms (a period of 0: any later fix)."""
    period_ms = session.service.period_s * 1000
    origin = session.grid_ms if session.grid_ms is not None else session.start_ms
    if period_ms == 0:
        return after_ms + 1
    return origin + ((after_ms - origin) // period_ms + 1) * period_ms


def _dt(session: Session, now_ms: int, wall_ms: int) -> int:
    """Seconds since the session's start: by wall time (the fix's own second) while wall
    time agrees with the monotonic clock since the start, else by the monotonic clock alone,
    so a step of the wall clock never moves a report's time away from its session's."""
    mono_ms = now_ms - session.start_ms
    if abs((wall_ms - session.start_wall_ms) - mono_ms) < 2000:
        return wall_ms // 1000 - session.start_wall_ms // 1000
    return (session.start_wall_ms % 1000 + mono_ms) // 1000


def _report(seq: int, session: Session, others: "list[int]", fix: "Fix", fields: int, dt: int) -> bytes:
    """Encode fix as a located report of session (and others), with only the given fields."""
    motion = bool(fields & F_MOTION)
    speed = None if fix.speed_mms is None else (fix.speed_mms * 36 + 5000) // 10000
    course = None if fix.course_cdeg is None else ((fix.course_cdeg + 100) // 200) % 180
    ext = {}  # type: dict[int, Any]
    if others:
        ext[messages.EXT_SESSIONS] = others
    if fields & F_ALTITUDE and fix.alt_cm is not None:
        ext[messages.EXT_ALT_M] = (fix.alt_cm + 50) // 100
    if fields & F_QUALITY:
        ext[messages.EXT_MODE] = fix.mode
        if fix.sats is not None:
            ext[messages.EXT_SATS] = min(fix.sats, messages.MAX_SATS)
        if fix.hdop_c is not None:
            ext[messages.EXT_HDOP_D] = min((fix.hdop_c + 5) // 10, messages.MAX_HDOP_D)
    return messages.encode_report(seq, session.sid, session.service.purpose, dt, fix.lat_e7,
                                  fix.lon_e7, speed, course, ext, motion)
