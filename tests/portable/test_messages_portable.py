"""Uplink messages v1 in the portable subset: round trips of every type, and refusals.

Runs under pytest on CPython and under scripts/micropython_tests.py on MicroPython.
"""

from portable_support import LAT, LON, raises, raises_with

from tcu.firmware.errors import ProtocolError
from tcu.protocol import cbor, messages

HEAD = messages.VERSION * 8


def refused(items, text):
    return raises_with(cbor.DecodeError, text, messages.decode, cbor.encode(items))


def test_report_with_position_only_round_trips():
    payload = messages.encode_report(5, 2, 4, 17, LAT, LON, 50, 45, None, False)
    assert cbor.decode(payload) == [HEAD + messages.T_REPORT, 5, 2, 4, 17, LAT, LON]
    msg = messages.decode(payload)
    assert (msg.type, msg.version, msg.seq, msg.sid, msg.purpose) == (messages.T_REPORT, 1, 5, 2, 4)
    assert (msg.dt, msg.lat_e7, msg.lon_e7) == (17, LAT, LON)
    assert msg.speed_kmh is None and msg.course_2deg is None and msg.ext == {} and msg.located


def test_report_with_motion_and_extensions_round_trips():
    ext = {messages.EXT_ALT_M: -12, messages.EXT_SATS: 9, messages.EXT_HDOP_D: 11, messages.EXT_MODE: 3}
    msg = messages.decode(messages.encode_report(6, 2, 1, -3, -LAT, -LON, 130, 179, ext))
    assert (msg.dt, msg.lat_e7, msg.lon_e7, msg.speed_kmh, msg.course_2deg) == (-3, -LAT, -LON, 130, 179)
    assert msg.ext == ext
    unknown = messages.decode(messages.encode_report(7, 2, 1, 0, 0, 0, None, None))
    assert unknown.speed_kmh is None and unknown.course_2deg is None and unknown.located


def test_report_without_motion_but_with_extensions_sends_no_motion():
    payload = messages.encode_report(1, 1, 1, 0, LAT, LON, 99, 99, {messages.EXT_ALT_M: 5}, False)
    assert cbor.decode(payload)[7:] == [None, None, 5]  # altitude travels positionally
    msg = messages.decode(payload)
    assert msg.speed_kmh is None and msg.ext == {messages.EXT_ALT_M: 5}


def test_extreme_positions_round_trip():
    for lat, lon in ((900000000, 1800000000), (-900000000, -1800000000), (0, 0)):
        msg = messages.decode(messages.encode_report(1, 1, 1, 0, lat, lon))
        assert (msg.lat_e7, msg.lon_e7) == (lat, lon)


def test_a_busy_located_report_fits_24_bytes():
    payload = messages.encode_report(60000, 20, 2, 65000, -337123456, -1512345678, 130, 179)
    assert len(payload) <= 24
    assert messages.decode(payload).seq == 60000


def test_session_start_round_trips_with_and_without_case():
    msg = messages.decode(messages.encode_session_start(7, 3, 2, 1700000000, 2))
    assert (msg.type, msg.seq, msg.sid, msg.purpose, msg.time, msg.trigger) == (
        messages.T_SESSION_START, 7, 3, 2, 1700000000, 2)
    assert msg.case is None and not msg.located
    msg = messages.decode(messages.encode_session_start(8, 4, 6, 1700000001, 6, "police-2026-0042"))
    assert msg.case == "police-2026-0042" and msg.trigger == 6


def test_session_end_round_trips():
    msg = messages.decode(messages.encode_session_end(8, 3, 1700000100, 4))
    assert (msg.type, msg.seq, msg.sid, msg.time, msg.reason) == (messages.T_SESSION_END, 8, 3, 1700000100, 4)
    assert not msg.located


def test_status_round_trips_and_never_has_a_position():
    state = messages.STATE_ONLINE | messages.STATE_GNSS_FIX
    payload = messages.encode_status(1700000200, state)
    msg = messages.decode(payload)
    assert (msg.type, msg.time, msg.state) == (messages.T_STATUS, 1700000200, state)
    assert not msg.located and len(cbor.decode(payload)) == 3


def test_command_response_round_trips_accepted_and_rejected():
    ok = messages.decode(messages.encode_command_response(9, 41, messages.RESULT_ACCEPTED, 3))
    assert (ok.type, ok.seq, ok.counter, ok.result, ok.sid, ok.reason) == (
        messages.T_COMMAND_RESPONSE, 9, 41, messages.RESULT_ACCEPTED, 3, None)
    no = messages.decode(messages.encode_command_response(10, 42, messages.RESULT_REJECTED, 7))
    assert (no.result, no.reason, no.sid) == (messages.RESULT_REJECTED, 7, 0)


def test_batch_round_trips_delta_coded():
    fixes = [(0, LAT, LON, 50, 45), (2, LAT + 120, LON + 80, 52, 46), (4, LAT + 245, LON + 158, 55, 44),
             (6, LAT + 365, LON + 240, 0, 178), (8, LAT + 365, LON + 240, 0, 1)]
    payload = messages.encode_batch(11, 5, 2, fixes)
    msg = messages.decode(payload)
    assert (msg.type, msg.seq, msg.sid, msg.purpose) == (messages.T_BATCH, 11, 5, 2)
    assert [tuple(f) for f in msg.fixes] == fixes
    assert (msg.dt, msg.lat_e7, msg.lon_e7, msg.speed_kmh, msg.course_2deg) == fixes[0]
    singles = sum(len(messages.encode_report(11, 5, 2, f[0], f[1], f[2], f[3], f[4])) for f in fixes)
    assert len(payload) < singles
    assert (len(payload) - len(messages.encode_report(11, 5, 2, *fixes[0]))) <= 8 * (len(fixes) - 1)


def test_batch_of_one_fix_round_trips():
    msg = messages.decode(messages.encode_batch(1, 1, 1, [(0, LAT, LON, 10, 20)]))
    assert [tuple(f) for f in msg.fixes] == [(0, LAT, LON, 10, 20)]


def test_empty_batch_is_refused():
    raises_with(ProtocolError, "at least one fix", messages.encode_batch, 1, 1, 1, [])


def test_refuses_other_versions_and_types():
    refused([2 * 8 + messages.T_REPORT, 1, 1, 1, 0, 0, 0], "version 2")
    refused([0 * 8 + messages.T_REPORT, 1, 1, 1, 0, 0, 0], "version 0")
    refused([HEAD + 7, 1, 1], "unknown message type 7")
    refused([HEAD + 6, 1, 1], "unknown message type 6")


def test_refuses_non_arrays_and_short_arrays():
    refused({1: 2}, "not an array")
    refused([HEAD, 1], "not an array")
    refused("report", "not an array")


def test_refuses_wrong_arity():
    refused([HEAD + messages.T_SESSION_START, 1, 1, 1, 0], "session start has 5 items")
    refused([HEAD + messages.T_SESSION_END, 1, 1, 0], "session end has 4 items")
    refused([HEAD + messages.T_STATUS, 1, 1, {1: 1}, 0], "status has 5 items")
    refused([HEAD + messages.T_STATUS, 1, 1, 1], "status radio is not a non-empty map")
    refused([HEAD + messages.T_COMMAND_RESPONSE, 1, 1, 0, 0, 0], "command response has 6 items")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0], "located report has 6 items")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, 5, 5, 1, 2563, {5: [1]}, 0], "located report has 13 items")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, 5, 5, {5: [1]}, 0], "altitude must be an integer")


def test_refuses_out_of_range_and_mistyped_fields():
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 900000001, 0], "lat")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, -1800000001], "lon")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, 5], "speed without course")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, 5, 180], "course")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, 65536, 1], "speed")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 2**31, 0, 0], "dt")
    refused([HEAD + messages.T_SESSION_END, -1, 1, 0, 1], "seq")
    refused([HEAD + messages.T_SESSION_END, True, 1, 0, 1], "seq")
    refused([HEAD + messages.T_SESSION_END, 1, "1", 0, 1], "sid")
    refused([HEAD + messages.T_STATUS, 0, 256], "state")
    refused([HEAD + messages.T_COMMAND_RESPONSE, 1, 1, 3, 0], "result")


def test_refuses_bad_extensions():
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, None, None, {9: 1}], "unknown extension")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, None, None, {}], "non-empty map")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, None, None, [1]], "altitude must be an integer")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, None, None, 2**31], "altitude must be an integer")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, None, None, "x"], "altitude must be an integer")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, None, None, {1: 5}], "unknown extension key 1")


def test_refuses_bad_case_references():
    refused([HEAD + messages.T_SESSION_START, 1, 1, 6, 0, 6, ""], "case reference")
    refused([HEAD + messages.T_SESSION_START, 1, 1, 6, 0, 6, "x" * 65], "case reference")
    refused([HEAD + messages.T_SESSION_START, 1, 1, 6, 0, 6, b"case"], "case reference")
    assert messages.decode(cbor.encode([HEAD + messages.T_SESSION_START, 1, 1, 6, 0, 6, "x" * 64])).case == "x" * 64


def test_refuses_bad_batches():
    first = [HEAD + messages.T_BATCH, 1, 1, 2, 0, 0, 0, 10, 10]
    refused(first + [[1, 2, 3, 4]], "5 integers per fix")
    refused(first + [{}], "5 integers per fix")
    refused(first + [[1, 900000001, 0, 0, 0]], "out of range")
    refused(first + [[1, 0, 0, -11, 0]], "out of range")
    refused(first + [[1, 0, 0, 0, "0"]], "delta")
    refused(first[:-2] + [None, 10, []], "speed")


def test_refuses_oversized_deep_and_garbage_uplinks():
    refused([HEAD + messages.T_SESSION_START, 1, 1, 6, 0, 6, "x" * 600], "cap")
    refused([HEAD + messages.T_REPORT, 1, 1, 1, 0, 0, 0, None, None, {1: [[1]]}], "nesting")
    raises(ProtocolError, messages.decode, b"\xff")
    raises(ProtocolError, messages.decode, b"")
    err = raises(ProtocolError, messages.decode, messages.encode_status(1, 1) + b"\x00")
    assert "trailing" in str(err)


def test_status_radio_and_sms_envelope_round_trip():
    from tcu.protocol import sms

    radio = {messages.RADIO_REG: 5, messages.RADIO_OPERATOR: "Op", messages.RADIO_RAT: "LTE",
             messages.RADIO_SIGNAL_DBM: -101}
    msg = messages.decode(messages.encode_status(1700000200, 1, radio))
    assert msg.ext == radio and msg.state == 1
    raises(ProtocolError, messages.decode, messages.encode_status(1, 1, {9: 1}))
    raises(ProtocolError, messages.decode, messages.encode_status(1, 1, {messages.RADIO_SIGNAL_DBM: 5}))
    start = messages.encode_session_start(1, 1, 1, 1700000200, 1)
    assert sms.decode_envelope(sms.encode_envelope("unit-1", 7, [start])) == ("unit-1", 7, [start])
    raises(ProtocolError, sms.decode_envelope, sms.encode_envelope("unit-1", 7, [start])[:-1])


def test_session_start_and_end_say_where_their_time_came_from():
    plain = messages.decode(messages.encode_session_start(1, 1, 1, 1700000000, 1))
    assert plain.time_source == messages.TIME_GNSS  # absent: GNSS, no byte spent
    for case in (None, "case-7"):
        for source in (messages.TIME_GNSS, messages.TIME_NTP, messages.TIME_SYSTEM):
            msg = messages.decode(messages.encode_session_start(1, 1, 6, 1700000000, 6, case, time_source=source))
            assert (msg.case, msg.time_source) == (case, source)
            end = messages.decode(messages.encode_session_end(2, 1, 1700000600, 2, source))
            assert (end.reason, end.time_source) == (2, source)
    assert len(messages.encode_session_start(1, 1, 1, 1700000000, 1, time_source=messages.TIME_SYSTEM)) == len(
        messages.encode_session_start(1, 1, 1, 1700000000, 1)) + 3  # {3: 2} in the start extension map
    refused([HEAD + messages.T_SESSION_START, 1, 1, 1, 0, 1, {3: 0}], "time source")  # GNSS is never sent
    refused([HEAD + messages.T_SESSION_START, 1, 1, 1, 0, 1, {3: 3}], "time source")
    refused([HEAD + messages.T_SESSION_START, 1, 1, 1, 0, 1, 2], "case reference")
    refused([HEAD + messages.T_SESSION_END, 1, 1, 0, 2, 9], "time source")
    provisional = messages.decode(messages.encode_command_response(3, 5, messages.RESULT_PROVISIONAL, 4))
    assert (provisional.result, provisional.sid) == (messages.RESULT_PROVISIONAL, 4)
