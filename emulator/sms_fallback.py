"""The SMS fallback of a crash or SOS session without a data path.

When a crash-notification or emergency-call session starts, its session start and its
first located report are watched in the outbox. If either is still unacknowledged
sms_after_s after the start, both go by SMS (hal/sms_pdu.py: SMS-SUBMIT, 8-bit data) in an
sms-envelope (protocol/sms.py), byte for byte the MQTT copies: once per session, recorded
in the audit log. Other purposes wait for the data path. Sans-I/O: due(now) says what to
send; the daemon sends it through the modem thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tcu.firmware.events import Publish
from tcu.hal.sms_pdu import MAX_DATA
from tcu.protocol import messages
from tcu.protocol.sms import encode_envelope

SMS_PURPOSES = (1, 3)  # crash-notification, emergency-call (protocol/tcu.cddl purpose)


@dataclass
class Watched:
    sid: int
    purpose: int
    started: float  # monotonic
    start: Publish
    report: Publish | None = None
    sent: bool = False
    keys: list[tuple[int, int]] = field(default_factory=list)


class SmsFallback:
    def __init__(self, unit: str, boot: int, after_s: float = 20.0) -> None:
        self.unit, self.boot, self.after_s = unit, boot, after_s
        self.sessions: dict[int, Watched] = {}

    def published(self, action: Publish, now: float) -> None:
        """Every uplink as it enters the outbox (LiveUnit.on_publish)."""
        if not action.located:
            try:
                msg = messages.decode(action.payload)
            except Exception:  # noqa: BLE001 - never the fallback's business to fail a publish
                return
            if msg.type == messages.T_SESSION_START and msg.purpose in SMS_PURPOSES:
                self.sessions[msg.sid] = Watched(msg.sid, msg.purpose or 0, now, action)
            elif msg.type == messages.T_SESSION_END:
                watched = self.sessions.get(msg.sid)
                if watched is not None and watched.report is None:
                    del self.sessions[msg.sid]  # ended with no located report: nothing to send
            return
        watched = self.sessions.get(action.sid)
        if watched is not None and watched.report is None:
            watched.report = action

    def due(self, now: float, pending: Callable[[tuple[int, int]], bool]) -> list[tuple[Watched, bytes]]:
        """The sessions whose SMS is due: (session, envelope bytes). pending(key): the outbox
        has not had it acknowledged. A session is marked sent here (once, whatever comes next)."""
        out = []
        for watched in list(self.sessions.values()):
            if watched.sent or watched.report is None or now - watched.started < self.after_s:
                continue
            keys = [(self.boot, watched.start.seq), (self.boot, watched.report.seq)]
            if not any(pending(key) for key in keys):
                del self.sessions[watched.sid]  # both acknowledged over MQTT: no SMS
                continue
            watched.sent, watched.keys = True, keys
            uplinks = [watched.start.payload, watched.report.payload]
            envelope = encode_envelope(self.unit, self.boot, uplinks)
            if len(envelope) > MAX_DATA:  # a sealed report may not fit with its start: the report alone
                envelope = encode_envelope(self.unit, self.boot, uplinks[1:])
            out.append((watched, envelope))
        return out
