"""The telematics unit's core: events and `now` in, actions out. No I/O, no clock.

Location is sampled only inside an active session; a fix that arrives while no session is
active is dropped before anything reads its position. Session transitions come from
transitions.TABLE; this module only applies their effects.
"""

from ..protocol import messages
from . import transitions as tr
from .errors import TcuError, UsageError
from .events import Cancel, FixEvent, Indicator, Publish, Shutdown, Tick, TriggerOff, TriggerOn
from .services import F_ALTITUDE, F_MOTION, F_QUALITY, default_services

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .fix import Fix
    from .services import Service


class Refused(TcuError):
    """The unit refuses a request by policy (e.g. the occupant cancelling a crash session)."""


class Session:
    __slots__ = ("sid", "service", "state", "start_ms", "end_ms", "next_due_ms", "samples")

    def __init__(self, sid: int, service: "Service", state: str, start_ms: int) -> None:
        self.sid = sid
        self.service = service
        self.state = state
        self.start_ms = start_ms
        self.end_ms = start_ms + service.bound_s * 1000
        self.next_due_ms = start_ms
        self.samples = 0


class Unit:
    """One unit for one boot. Feed it events with `handle(event, now_ms)`."""

    __slots__ = ("services", "sessions", "_next_sid", "_next_seq", "indicator")

    def __init__(self, services: "dict[int, Service] | None" = None) -> None:
        self.services = services if services is not None else default_services()
        self.sessions = {}  # type: dict[int, Session]  # by trigger kind
        self._next_sid = 1
        self._next_seq = 1
        self.indicator = False

    def next_timer(self) -> "int | None":
        """When the unit next needs a Tick (ms), or None while dormant."""
        if not self.sessions:
            return None
        return min(s.end_ms for s in self.sessions.values())

    def handle(self, event: "Any", now_ms: int) -> "list[Any]":
        actions = []  # type: list[Any]
        if isinstance(event, FixEvent):
            if self.sessions:  # dormant: the fix is dropped unread
                self._sample(event.fix, now_ms, actions)
        elif isinstance(event, Tick):
            for session in self._by_priority():
                if session.end_ms <= now_ms:
                    self._input(session.service, tr.TIME_UP, now_ms, actions)
        elif isinstance(event, (TriggerOn, TriggerOff, Cancel)):
            self._input(self._service(event.kind), _INPUT_OF[type(event)], now_ms, actions)
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

    def _input(self, service: "Service", event: str, now_ms: int, actions: list) -> None:
        session = self.sessions.get(service.trigger)
        state = session.state if session else tr.IDLE
        effect, next_state = tr.step(service.mode, service.occupant_can_cancel, state, event)
        if effect == tr.START:
            self._start(service, next_state, now_ms, actions)
        elif effect == tr.END and session is not None:
            self._end(session, tr.END_REASON_OF_INPUT[event], now_ms, actions)
        elif effect == tr.REFUSE:
            raise Refused("%s: the occupant cannot cancel this session" % service.name
                          if session else "%s: no session to cancel" % service.name)
        elif session is not None:
            session.state = next_state

    def _start(self, service: "Service", state: str, now_ms: int, actions: list) -> None:
        session = Session(self._next_sid, service, state, now_ms)
        self._next_sid += 1
        self.sessions[service.trigger] = session
        seq = self._seq()
        payload = messages.encode_session_start(
            seq, session.sid, service.purpose, now_ms // 1000, service.trigger)
        actions.append(Publish(payload, service.priority, session.sid, seq, False))

    def _end(self, session: Session, reason: int, now_ms: int, actions: list) -> None:
        del self.sessions[session.service.trigger]  # the session, and all it held, is gone
        seq = self._seq()
        payload = messages.encode_session_end(seq, session.sid, now_ms // 1000, reason)
        actions.append(Publish(payload, session.service.priority, session.sid, seq, False))

    def _sample(self, fix: "Fix", now_ms: int, actions: list) -> None:
        for session in self._by_priority():
            if now_ms < session.next_due_ms or now_ms >= session.end_ms:
                continue
            service = session.service
            seq = self._seq()
            actions.append(Publish(_report(seq, session, fix), service.priority, session.sid, seq, True))
            session.samples += 1
            session.next_due_ms = now_ms + service.period_s * 1000
            if session.samples >= service.max_samples:
                self._input(service, tr.SAMPLES_DONE, now_ms, actions)

    def _seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _update_indicator(self, actions: list) -> None:
        on = bool(self.sessions)
        if on != self.indicator:
            self.indicator = on
            actions.append(Indicator(on))


_INPUT_OF = {TriggerOn: tr.ON, TriggerOff: tr.OFF, Cancel: tr.CANCEL}


def _report(seq: int, session: Session, fix: "Fix") -> bytes:
    """Encode fix as a located report, with only the fields the session's purpose permits."""
    fields = session.service.fields
    motion = bool(fields & F_MOTION)
    speed = None if fix.speed_mms is None else (fix.speed_mms * 36 + 5000) // 10000
    course = None if fix.course_cdeg is None else ((fix.course_cdeg + 100) // 200) % 180
    ext = {}  # type: dict[int, int]
    if fields & F_ALTITUDE and fix.alt_cm is not None:
        ext[messages.EXT_ALT_M] = (fix.alt_cm + 50) // 100
    if fields & F_QUALITY:
        ext[messages.EXT_MODE] = fix.mode
        if fix.sats is not None:
            ext[messages.EXT_SATS] = fix.sats
        if fix.hdop_c is not None:
            ext[messages.EXT_HDOP_D] = (fix.hdop_c + 5) // 10
    dt = fix.time_ms // 1000 - session.start_ms // 1000
    return messages.encode_report(seq, session.sid, session.service.purpose, dt, fix.lat_e7,
                                  fix.lon_e7, speed, course, ext, motion)
