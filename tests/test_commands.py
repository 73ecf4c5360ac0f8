"""Downlink commands: authentic ones act; forged, replayed, expired, misrouted and
algorithm-swapped ones are refused with a reason and change nothing."""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portable.portable_support import gnss_unit
from wire_check import assert_valid

from tcu.emulator.crypto import ed25519_verify, open_uplink, seal_uplink
from tcu.firmware import services as sv
from tcu.firmware.events import Cancel, Downlink, FixEvent, PersistCounter, Publish, Tick
from tcu.firmware.fix import Fix
from tcu.firmware.unit import Refused, Unit
from tcu.protocol import commands as cmd
from tcu.protocol import cose, messages

UNIT = "unit-0001"
NOW = 1_700_000_000
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
HMAC_KEY = bytes(range(100, 132))
PUBLIC_RAW = SIGNING_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def verifier() -> cmd.CommandVerifier:
    keys = [cmd.BackendKey(b"backend-ed", cose.ALG_EDDSA, SIGNING_KEY.public_key()),
            cmd.BackendKey(b"backend-mac", cose.ALG_HMAC_256_256, HMAC_KEY)]
    return cmd.CommandVerifier(UNIT, keys, ed25519_verify)


def command(code: int = cmd.CMD_TRACK_STOLEN, counter: int = 1, unit: str = UNIT,
            window: tuple[int, int] = (NOW - 60, NOW + 300), **args: object) -> cmd.Command:
    defaults = {cmd.CMD_TRACK_STOLEN: {1: "police-2026-0042", 2: NOW + 3600},
                cmd.CMD_LAWFUL_REQUEST: {1: "court-order-7", 2: NOW + 7200}}.get(code, {})
    merged = dict(defaults)
    merged.update({int(k[1:]): v for k, v in args.items()})
    return cmd.Command(unit, counter, window[0], window[1], code, merged)


def signed(c: cmd.Command) -> bytes:
    return cmd.seal_command(c, b"backend-ed", cose.ALG_EDDSA, None, SIGNING_KEY.sign)


def maced(c: cmd.Command, key: bytes = HMAC_KEY, kid: bytes = b"backend-mac") -> bytes:
    return cmd.seal_command(c, kid, cose.ALG_HMAC_256_256, key)


def state(unit: Unit) -> tuple:
    return (sorted((k, s.sid, s.end_ms) for k, s in unit.sessions.items()), unit.command_counter,
            unit.indicator, unit.status_interval_s)


def responses(actions: list) -> list[messages.Message]:
    payloads = [a.payload for a in actions if isinstance(a, Publish)]
    for payload in payloads:
        assert_valid(payload)
    return [m for m in map(messages.decode, payloads) if m.type == messages.T_COMMAND_RESPONSE]


def refused_with(unit: Unit, data: bytes, reason: int, now: int = NOW) -> None:
    before = state(unit)
    actions = unit.handle(Downlink(data), now * 1000)
    assert [(r.result, r.reason) for r in responses(actions)] == [(messages.RESULT_REJECTED, reason)]
    assert len(actions) == 1 and state(unit) == before


@pytest.mark.parametrize("seal", [signed, maced])
def test_an_authentic_command_starts_tracking_with_its_case(seal) -> None:
    unit = gnss_unit(verifier=verifier())
    actions = unit.handle(Downlink(seal(command())), NOW * 1000)
    assert isinstance(actions[0], PersistCounter) and actions[0].counter == 1  # persisted before acting
    start = messages.decode(actions[1].payload)
    assert (start.type, start.purpose, start.case) == (messages.T_SESSION_START, sv.P_STOLEN_VEHICLE_TRACKING,
                                                       "police-2026-0042")
    assert [(r.result, r.sid) for r in responses(actions)] == [(messages.RESULT_ACCEPTED, start.sid)]
    assert unit.indicator and unit.next_timer() == (NOW + 3600) * 1000  # ends at the requested time


def test_expiry_ends_a_lawful_request_and_the_occupant_cannot_cancel_it() -> None:
    unit = gnss_unit(verifier=verifier())
    unit.handle(Downlink(signed(command(cmd.CMD_LAWFUL_REQUEST))), NOW * 1000)
    with pytest.raises(Refused, match="occupant"):
        unit.handle(Cancel(sv.LAWFUL), NOW * 1000 + 5)
    report = [messages.decode(a.payload) for a in unit.handle(
        FixEvent(Fix(NOW * 1000, 1, 2, 3, 100, 5000, 100)), NOW * 1000) if isinstance(a, Publish)][0]
    assert report.speed_kmh is None and report.ext == {}  # a lawful request gets position only
    ended = [messages.decode(a.payload) for a in unit.handle(Tick(), (NOW + 7200) * 1000) if isinstance(a, Publish)]
    assert [m.type for m in ended] == [messages.T_SESSION_END] and not unit.sessions


def test_backend_cancel_ends_only_what_the_backend_started() -> None:
    unit = gnss_unit(verifier=verifier())
    unit.handle(Downlink(signed(command(counter=1))), NOW * 1000)
    unit.handle(Tick(), NOW * 1000)
    from tcu.firmware.events import TriggerOn
    unit.handle(TriggerOn(sv.CRASH), NOW * 1000)
    crash_sid = unit.sessions[sv.CRASH].sid
    stolen_sid = unit.sessions[sv.STOLEN].sid
    refused = responses(unit.handle(Downlink(signed(command(cmd.CMD_CANCEL, 2, _3=crash_sid))), NOW * 1000))
    assert (refused[0].result, refused[0].reason) == (messages.RESULT_REJECTED, cmd.R_POLICY)
    assert sv.CRASH in unit.sessions and unit.command_counter == 2  # counter used up, nothing else
    actions = unit.handle(Downlink(signed(command(cmd.CMD_CANCEL, 3, _3=stolen_sid))), NOW * 1000)
    assert sv.STOLEN not in unit.sessions and responses(actions)[0].result == messages.RESULT_ACCEPTED


def test_forged_replayed_expired_misrouted_and_swapped_commands_change_nothing() -> None:
    unit = gnss_unit(verifier=verifier())
    good = signed(command(counter=5))
    forged = bytearray(good)
    forged[-1] ^= 1
    refused_with(unit, bytes(forged), cmd.R_UNAUTHENTIC)
    refused_with(unit, maced(command(counter=5), key=b"\x00" * 32), cmd.R_UNAUTHENTIC)
    refused_with(unit, signed(command(counter=5, window=(NOW - 600, NOW - 1))), cmd.R_EXPIRED)
    refused_with(unit, signed(command(counter=5, window=(NOW + 60, NOW + 600))), cmd.R_NOT_YET_VALID)
    # Sealed for another unit: its topic is in the AAD, so it does not even verify here.
    refused_with(unit, signed(command(counter=5, unit="unit-0002")), cmd.R_UNAUTHENTIC)
    # Sealed over this unit's topic but naming another unit (a backend bug): still refused.
    for_other = cmd.encode_command(command(counter=5, unit="unit-0002"))
    refused_with(unit, cose.sign1(for_other, cose.ALG_EDDSA, b"backend-ed", cmd.downlink_topic(UNIT).encode(),
                                  SIGNING_KEY.sign), cmd.R_WRONG_UNIT)
    # Signed for another unit's topic, payload edited to name this unit: the AAD does not match.
    other = cmd.Command(UNIT, 5, NOW - 60, NOW + 300, cmd.CMD_TRACK_STOLEN, {1: "x", 2: NOW + 60})
    aad_other = cmd.downlink_topic("unit-0002").encode()
    refused_with(unit, cose.sign1(cmd.encode_command(other), cose.ALG_EDDSA, b"backend-ed", aad_other,
                                  SIGNING_KEY.sign), cmd.R_UNAUTHENTIC)
    # Algorithm swap: an HMAC "signature" keyed with the (public) Ed25519 key, under its key id.
    refused_with(unit, maced(command(counter=5), key=PUBLIC_RAW, kid=b"backend-ed"), cmd.R_ALGORITHM)
    refused_with(unit, good[:-5], cmd.R_MALFORMED)
    assert responses(unit.handle(Downlink(good), NOW * 1000))[0].result == messages.RESULT_ACCEPTED
    refused_with(unit, good, cmd.R_REPLAYED)
    refused_with(unit, signed(command(counter=4)), cmd.R_REPLAYED)


def test_the_replay_window_survives_a_restart() -> None:
    unit = gnss_unit(verifier=verifier())
    good = signed(command(counter=9))
    persisted = [a.counter for a in unit.handle(Downlink(good), NOW * 1000) if isinstance(a, PersistCounter)]
    restarted = gnss_unit(verifier=verifier(), command_counter=persisted[-1])
    refused_with(restarted, good, cmd.R_REPLAYED, now=NOW + 10)


def test_a_unit_without_keys_accepts_no_command() -> None:
    refused_with(Unit(), signed(command()), cmd.R_UNAUTHENTIC)


def test_pycose_interoperates_both_ways() -> None:
    from pycose.algorithms import HMAC256, EdDSA
    from pycose.headers import KID, Algorithm
    from pycose.keys import OKPKey, SymmetricKey
    from pycose.keys.curves import Ed25519
    from pycose.messages import CoseMessage, Mac0Message, Sign1Message

    payload = cmd.encode_command(command(counter=3))
    aad = cmd.downlink_topic(UNIT).encode()
    okp = OKPKey(crv=Ed25519, d=bytes(range(32)), x=PUBLIC_RAW)
    theirs = Sign1Message(
        phdr={Algorithm: EdDSA}, uhdr={KID: b"backend-ed"}, payload=payload, external_aad=aad)
    theirs.key = okp
    unit = gnss_unit(verifier=verifier())
    accepted = responses(unit.handle(Downlink(theirs.encode()), NOW * 1000))  # pyright: ignore[reportCallIssue]
    assert accepted[0].result == messages.RESULT_ACCEPTED

    def pycose_decode(data: bytes) -> CoseMessage:
        # cbor2 6 decodes what a tag holds as immutable (tuple, frozendict), which pycose 1.1's
        # decode() rejects; hand pycose the same items as a list and a dict.
        tagged = cbor2.loads(data)
        items = list(tagged.value)
        items[1] = dict(items[1])
        return CoseMessage._COSE_MSG_ID[tagged.tag].from_cose_obj(items, True)

    ours = pycose_decode(maced(command(counter=4)))
    assert isinstance(ours, Mac0Message)
    ours.key, ours.external_aad = SymmetricKey(k=HMAC_KEY), aad
    assert ours.verify_tag() and ours.phdr[Algorithm] is HMAC256  # pyright: ignore  # pycose: no narrowing
    ours_signed = pycose_decode(signed(command(counter=5)))
    assert isinstance(ours_signed, Sign1Message)
    ours_signed.key, ours_signed.external_aad = okp, aad
    assert ours_signed.verify_signature()  # pyright: ignore  # pycose: no narrowing


def _mutate(data: bytes, how: int, where: int, value: int) -> bytes:
    where %= len(data)
    if how == 0:
        return data[:where] + bytes([data[where] ^ (value or 1)]) + data[where + 1:]
    if how == 1:
        return data[:where]
    if how == 2:
        return data[:where] + bytes([value]) + data[where:]
    return data[:where] + data[where + 1:]


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([signed, maced]), st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255),
       st.integers(1, 50))
def test_ten_thousand_forged_commands_are_all_refused(seal, how, where, value, counter) -> None:
    unit = gnss_unit(verifier=verifier(), command_counter=60)
    original = seal(command(counter=60 + counter))
    forged = _mutate(original, how, where, value)
    if forged == original:
        return
    before = state(unit)
    actions = unit.handle(Downlink(forged), NOW * 1000)
    assert [r.result for r in responses(actions)] == [messages.RESULT_REJECTED]
    assert state(unit) == before and not any(isinstance(a, PersistCounter) for a in actions)


def test_end_to_end_sealed_location_is_opaque_to_the_broker() -> None:
    report = messages.encode_report(2, 1, 1, 0, 481374300, 115754900, 50, 45)
    key, topic = bytes(32), "tcu/v1/%s/up" % UNIT
    sealed = seal_uplink(report, key, topic)
    assert report not in sealed and cbor2.loads(sealed).tag == cose.TAG_ENCRYPT0
    assert open_uplink(sealed, key, topic) == report
    with pytest.raises(cose.CoseError):
        open_uplink(sealed, key, "tcu/v1/unit-0002/up")  # moved to another unit's topic
    tampered = bytearray(sealed)
    tampered[-3] ^= 0x40
    with pytest.raises(cose.CoseError):
        open_uplink(bytes(tampered), key, topic)


def test_no_local_input_starts_or_ends_a_backend_session() -> None:
    from tcu.firmware.events import TriggerOff, TriggerOn

    unit = gnss_unit(verifier=verifier())
    for event in (TriggerOn(sv.STOLEN), TriggerOn(sv.LAWFUL), TriggerOff(sv.LAWFUL)):
        with pytest.raises(Refused, match="authenticated backend command"):
            unit.handle(event, NOW * 1000)
    assert not unit.sessions and not unit.indicator
    unit.handle(Downlink(signed(command())), NOW * 1000)
    with pytest.raises(Refused):
        unit.handle(TriggerOff(sv.STOLEN), NOW * 1000)
    assert sv.STOLEN in unit.sessions
