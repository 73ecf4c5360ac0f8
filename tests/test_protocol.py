"""The CBOR subset and v1 messages: round trips against cbor2, and what the strict decoder refuses."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcu.firmware.errors import ProtocolError
from tcu.protocol import cbor, messages

scalars = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64 - 1), st.binary(max_size=40),
    st.text(max_size=20), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.integers(-100, 100), inner, max_size=5)),
    max_leaves=20)


def _maps_in(value: object) -> list[dict]:
    if isinstance(value, dict):
        return [value] + [m for v in value.values() for m in _maps_in(v)]
    if isinstance(value, list):
        return [m for v in value for m in _maps_in(v)]
    return []


@given(values)
def test_encoding_matches_cbor2_canonical_and_round_trips(value: object) -> None:
    encoded = cbor.encode(value)
    assert cbor2.loads(encoded) == value
    maps = _maps_in(value)
    if not maps:
        assert encoded == cbor2.dumps(value, canonical=True)
    for m in maps:  # RFC 8949 4.2.1 orders keys bytewise (cbor2's canonical is RFC 7049's length-first)
        wire_order = [cbor2.dumps(k) for k in cbor2.loads(cbor.encode(m))]
        assert wire_order == sorted(wire_order)


@given(st.binary(max_size=64))
def test_decoder_is_total_on_arbitrary_bytes(data: bytes) -> None:
    try:
        cbor.decode(data)
    except ProtocolError:
        pass


@pytest.mark.parametrize("data, why", [
    (bytes.fromhex("9f01ff"), "indefinite"),  # indefinite-length array
    (bytes.fromhex("a2010201 03"), "repeats key"),  # {1: 2, 1: 3}
    (bytes.fromhex("c11a00000000"), "tag"),  # epoch time tag
    (bytes.fromhex("f93c00"), "float"),  # half float 1.0
    (bytes.fromhex("1800"), "non-shortest"),  # 0 in two bytes
    (bytes.fromhex("190017"), "non-shortest"),
    (bytes.fromhex("0102"), "trailing"),
    (bytes.fromhex("9affffffff"), "claims"),  # a 4-billion item array in 9 bytes
    (bytes.fromhex("62c328"), "UTF-8"),
    (b"", "empty"),
])
def test_strict_decoder_refuses(data: bytes, why: str) -> None:
    with pytest.raises(cbor.DecodeError, match=why):
        cbor.decode(data)


def test_nesting_and_size_caps() -> None:
    with pytest.raises(cbor.DecodeError, match="nesting"):
        cbor.decode(b"\x81" * 20 + b"\x00", max_depth=8)
    with pytest.raises(cbor.DecodeError, match="cap"):
        cbor.decode(b"\x40" * 10, max_size=4)


reports = st.builds(
    messages.encode_report,
    seq=st.integers(0, 2**32), sid=st.integers(0, 2**16), purpose=st.integers(1, 5),
    dt=st.integers(-(2**31), 2**31 - 1), lat_e7=st.integers(-900000000, 900000000),
    lon_e7=st.integers(-1800000000, 1800000000),
    speed_kmh=st.none() | st.integers(0, 400), course_2deg=st.none() | st.integers(0, 179),
    ext=st.none() | st.builds(
        lambda fix, sids: {**{k: v for k, v in fix.items() if v is not None},
                           **({messages.EXT_SESSIONS: sids} if sids else {})},
        st.fixed_dictionaries({}, optional={
            messages.EXT_ALT_M: st.integers(-(2**31), 2**31 - 1), messages.EXT_SATS: st.integers(0, messages.MAX_SATS),
            messages.EXT_HDOP_D: st.integers(0, messages.MAX_HDOP_D), messages.EXT_MODE: st.sampled_from((2, 3))}),
        st.lists(st.integers(0, 2**16), max_size=8)),
    motion=st.booleans())


@given(reports)
def test_reports_decode_with_a_standard_decoder_and_ours(payload: bytes) -> None:
    items = cbor2.loads(payload)
    msg = messages.decode(payload)
    assert items[0] == 8 * messages.VERSION + messages.T_REPORT
    assert (msg.seq, msg.sid, msg.purpose, msg.dt, msg.lat_e7, msg.lon_e7) == tuple(items[1:7])
    assert msg.located


@given(st.data())
def test_report_extras_round_trip_whatever_subset_is_known(data: st.DataObject) -> None:
    payload = data.draw(reports)
    items = cbor2.loads(payload)
    msg = messages.decode(payload)
    wire_map = items[-1] if isinstance(items[-1], dict) else {}
    assert not set(wire_map) & set(messages.POSITIONAL_EXT)  # altitude and quality are positional
    assert messages.decode(messages.encode_report(msg.seq, msg.sid, msg.purpose or 0, msg.dt or 0, msg.lat_e7 or 0,
                                                  msg.lon_e7 or 0, msg.speed_kmh, msg.course_2deg, msg.ext,
                                                  len(items) >= 9 and not (items[7] is None and items[8] is None)
                                                  )).ext == msg.ext


def test_a_crash_report_fits_a_teltonika_record() -> None:
    """Time, position, altitude, speed, course, satellites (Codec 8's GPS element, 30 B a record)
    plus HDOP, fix mode, purpose, session and sequence, at a busy unit's large values."""
    ext = {messages.EXT_ALT_M: 4000, messages.EXT_SATS: messages.MAX_SATS, messages.EXT_HDOP_D: 254,
           messages.EXT_MODE: 3}
    payload = messages.encode_report(seq=60000, sid=20, purpose=1, dt=599, lat_e7=-337123456,
                                     lon_e7=-1512345678, speed_kmh=130, course_2deg=179, ext=ext)
    assert len(payload) <= 30
    assert messages.decode(payload).ext == ext


def test_a_located_report_fits_24_bytes() -> None:
    # Time, position, speed, course, purpose and sequence on a busy unit: large values.
    payload = messages.encode_report(seq=60000, sid=20, purpose=2, dt=65000, lat_e7=-337123456,
                                     lon_e7=-1512345678, speed_kmh=130, course_2deg=179)
    assert len(payload) <= 24


def test_events_round_trip() -> None:
    start = messages.decode(messages.encode_session_start(7, 3, 2, 1_700_000_000, 2))
    fields = (start.type, start.seq, start.sid, start.purpose, start.time, start.trigger)
    assert fields == (1, 7, 3, 2, 1_700_000_000, 2)
    assert not start.located
    end = messages.decode(messages.encode_session_end(8, 3, 1_700_000_100, 1))
    assert (end.type, end.time, end.reason) == (4, 1_700_000_100, 1)


@pytest.mark.parametrize("items, why", [
    ([8 * 2 + 2, 1, 1, 1, 0, 0, 0], "version 2"),
    ([8 + 7, 1, 1], "unknown message type"),
    ([8 + 2, 1, 1, 1, 0, 900000001, 0], "lat"),
    ([8 + 2, 1, 1, 1, 0, 0, 0, 5], "speed without course"),
    ([8 + 2, 1, 1, 1, 0, 0, 0, 5, 180], "course"),
    ([8 + 2, 1, 1, 1, 0, 0, 0, None, None, {9: 1}], "unknown extension"),
    ([8 + 2, 1, 1, 1, 0, 0, 0, None, None, {1: 519}], "unknown extension key 1"),  # altitude is positional
    ([8 + 2, 1, 1, 1, 0, 0, 0, None, None, None], "null altitude and no quality"),
    ([8 + 2, 1, 1, 1, 0, 0, 0, None, None, 5, 2561], "mode 1"),
    ([8 + 2, 1, 1, 1, 0, 0, 0, None, None, 5, 0], "fix quality"),
    ([8 + 2, 1, 1, 1, 0, 0, 0, None, None, 5, 2563, 7], "3 items after course"),
    ([8 + 2, 1, 1, 1, 0, 0, 0, None, None, {5: 3}], "other sessions"),
    ([8 + 2, 1, 1, 1, 0, 0, 0, None, None, {5: [1, -2]}], "session"),
    ([8 + 1, 1, 1, 1, 0], "session start has 5 items"),
    ([8 + 4, -1, 1, 0, 1], "seq"),
    ({1: 2}, "not an array"),
])
def test_message_decoder_refuses(items: object, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        messages.decode(cbor2.dumps(items))
