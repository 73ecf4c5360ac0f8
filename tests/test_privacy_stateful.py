"""The privacy promise as a state machine test: any interleaving of triggers, cancels,
downlink commands (valid and forged), fixes, ticks and link up/down, and after every step:

- no located uplink outside an authorised session, none outside its session's time bound,
  sample bound and field set;
- no position held by the unit once no session is active;
- the privacy indicator on exactly while a session is active.

The link is modelled as a queue that holds uplinks while down (what the outbox does); it
must never let a position out that the unit did not emit inside a session.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from portable.portable_support import gnss_unit

from tcu.firmware import services as sv
from tcu.firmware.events import Cancel, Downlink, FixEvent, Indicator, Publish, Tick, TriggerOff, TriggerOn
from tcu.firmware.fix import Fix
from tcu.firmware.unit import Refused, Unit
from tcu.protocol import commands as cmd
from tcu.protocol import cose, messages

UNIT = "unit-0001"
KEY = bytes(range(32))
T0 = 1_778_745_600_000
EXAMPLES = int(os.environ.get("TCU_STATEFUL_EXAMPLES", "1000"))
RUN = {"examples": 0, "steps": 0, "located": 0}

# Which optional fields each report may carry, by purpose (the union is checked per report).
SERVICES = sv.default_services()
FIELDS_OF_PURPOSE = {s.purpose: s.fields for s in SERVICES.values()}


def allowed_fields(msg: messages.Message) -> int:
    fields = sv.F_POSITION
    if msg.speed_kmh is not None or msg.course_2deg is not None:
        fields |= sv.F_MOTION
    if messages.EXT_ALT_M in msg.ext:
        fields |= sv.F_ALTITUDE
    if set(msg.ext) & {messages.EXT_MODE, messages.EXT_SATS, messages.EXT_HDOP_D}:
        fields |= sv.F_QUALITY
    return fields


class PrivacyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        verifier = cmd.CommandVerifier(UNIT, [cmd.BackendKey(b"k", cose.ALG_HMAC_256_256, KEY)])
        # An MSD stand-in (the ASN.1 encoder is the host's): it carries the session's sampled fixes' count
        self.unit = gnss_unit(verifier=verifier, msd_encoder=lambda v: bytes([2, v.message_id, v.n1 is not None]))
        self.now = T0
        self.counter = 0
        self.link_up = True
        self.held: list[bytes] = []  # queued while the link is down
        self.sent: list[bytes] = []  # what left the unit
        self.sessions: dict[int, dict] = {}  # sid -> what the test knows of it
        self.indicator = False
        RUN["examples"] += 1

    # -- inputs ---------------------------------------------------------------------
    @rule(kind=st.sampled_from(sv.LOCAL_TRIGGERS), on=st.booleans())
    def trigger(self, kind: int, on: bool) -> None:
        self._handle(TriggerOn(kind) if on else TriggerOff(kind))

    @rule(kind=st.sampled_from(sorted(sv.TRIGGER_NAMES)))
    def occupant_cancel(self, kind: int) -> None:
        self._handle(Cancel(kind))

    @rule(code=st.sampled_from([cmd.CMD_TRACK_STOLEN, cmd.CMD_LAWFUL_REQUEST, cmd.CMD_CANCEL, cmd.CMD_LOCATE_NOW]),
          minutes=st.integers(1, 240), sid=st.integers(1, 12), forge=st.sampled_from([None, "key", "unit", "old"]))
    def command(self, code: int, minutes: int, sid: int, forge: str | None) -> None:
        now_s = self.now // 1000
        args = {1: "case-1", 2: now_s + minutes * 60} if code in (1, 2) else {3: sid}
        counter = self.counter if forge == "old" else self.counter + 1  # old: the last accepted
        command = cmd.Command("unit-0002" if forge == "unit" else UNIT, counter, now_s - 10, now_s + 60, code, args)
        key = bytes(32) if forge == "key" else KEY
        data = cmd.seal_command(command, b"k", cose.ALG_HMAC_256_256, key)
        before = self.unit.command_counter
        self._handle(Downlink(data))
        if forge is not None:
            assert self.unit.command_counter == before  # a forgery changes nothing
        else:
            self.counter = counter

    @rule(seconds=st.one_of(st.integers(0, 5), st.integers(0, 900)), lat=st.integers(-900000000, 900000000),
          lon=st.integers(-1800000000, 1800000000))
    def fix(self, seconds: int, lat: int, lon: int) -> None:
        self.now += seconds * 1000
        self._handle(FixEvent(Fix(self.now, lat, lon, 3, 51900, 13900, 9000, 11, 94)))

    @rule(seconds=st.integers(0, 20_000))
    def tick(self, seconds: int) -> None:
        self.now += seconds * 1000
        timer = self.unit.next_timer()
        if timer is not None and timer <= self.now:
            self._handle(Tick())

    @precondition(lambda self: self.link_up)
    @rule()
    def link_down(self) -> None:
        self.link_up = False

    @precondition(lambda self: not self.link_up)
    @rule()
    def link_up_again(self) -> None:
        self.link_up = True
        self.sent.extend(self.held)
        self.held.clear()

    # -- the unit's outputs, checked as they come ----------------------------------------
    def _handle(self, event: object) -> None:
        RUN["steps"] += 1
        had_sessions = {s.sid for s in self.unit.sessions.values()}
        try:
            actions = self.unit.handle(event, self.now)
        except Refused:
            return
        for action in actions:
            if isinstance(action, Indicator):
                self.indicator = action.on
            elif isinstance(action, Publish):
                self._check(messages.decode(action.payload), had_sessions)
                (self.sent if self.link_up else self.held).append(action.payload)

    def _check(self, msg: messages.Message, had_sessions: set[int]) -> None:
        if msg.type == messages.T_SESSION_START and msg.msd is not None:  # an eCall MSD: a position
            RUN["located"] += 1
            known = self.sessions.get(msg.sid)
            assert known is not None and not known["ended"], "an MSD outside its session"
            assert msg.trigger in (sv.CRASH, sv.SOS) and msg.time == known["start"]
            assert msg.msd[2] == 0 or known["samples"] > 0, "recent positions the session never sampled"
        elif msg.type == messages.T_SESSION_START:
            assert msg.trigger is not None
            self.sessions[msg.sid] = {"start": msg.time, "purpose": msg.purpose, "samples": 0, "ended": False,
                                      "bound": SERVICES[msg.trigger].bound_s, "max": SERVICES[msg.trigger].max_samples}
        elif msg.type == messages.T_SESSION_END:
            self.sessions[msg.sid]["ended"] = True
        elif msg.located:
            RUN["located"] += 1
            lead = self.sessions.get(msg.sid)
            assert lead is not None and msg.purpose == lead["purpose"]
            when = lead["start"] + msg.dt
            allowed = 0
            for sid in [msg.sid] + list(msg.ext.get(messages.EXT_SESSIONS, [])):
                known = self.sessions.get(sid)  # a report serves only sessions that are open
                assert known is not None and not known["ended"], "a position outside any session"
                assert sid in had_sessions or known["samples"] == 0
                known["samples"] += 1
                assert known["samples"] <= known["max"], "beyond a session's sample bound"
                assert -1 <= when - known["start"] <= known["bound"], "outside a session's time bound"
                allowed |= FIELDS_OF_PURPOSE[known["purpose"]]
            assert allowed_fields(msg) & ~allowed == 0, "fields beyond the purposes served"

    # -- after every step -----------------------------------------------------------
    @invariant()
    def indicator_on_exactly_while_a_session_is_active(self) -> None:
        assert self.indicator == bool(self.unit.sessions) == self.unit.indicator

    @invariant()
    def no_position_held_without_a_session(self) -> None:
        held = [getattr(self.unit, slot) for slot in Unit.__slots__]
        assert not any(isinstance(value, Fix) for value in held)
        for session in self.unit.sessions.values():
            assert not any(isinstance(getattr(session, slot), Fix) for slot in type(session).__slots__)

    @invariant()
    def every_active_session_was_announced(self) -> None:
        for session in self.unit.sessions.values():
            assert session.sid in self.sessions and not self.sessions[session.sid]["ended"]


PrivacyMachine.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestPrivacy = PrivacyMachine.TestCase


def teardown_module() -> None:
    from conftest import FIGURES  # shown in the terminal summary of every run, CI's included

    FIGURES.append("privacy state machine: %(examples)d examples, %(steps)d steps, "
                   "%(located)d located reports checked" % RUN)
