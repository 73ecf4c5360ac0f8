"""COSE (HMAC) and downlink commands in the portable subset: RFC 4231 vectors, COSE_Mac0,
CommandVerifier reasons, and a Unit acting on verified commands.

HMAC keys only: MicroPython has no Ed25519. Runs under pytest on CPython and under
scripts/micropython_tests.py on MicroPython.
"""

from portable_support import LAT, LON, fix_at, gnss_unit, of_type, publishes, raises, raises_with

from tcu.firmware import services as sv
from tcu.firmware import transitions as tr
from tcu.firmware.errors import ProtocolError
from tcu.firmware.events import Cancel, Downlink, FixEvent, Indicator, PersistCounter, Publish, Tick, TriggerOn
from tcu.firmware.unit import Refused, Unit
from tcu.protocol import cbor, cose, messages
from tcu.protocol import commands as cmd

UNIT = "unit-0001"
NOW = 1700000000
KID = b"backend-mac"
KEY = bytes(range(100, 132))
ED_KID = b"backend-ed"

# RFC 4231 section 4: (key, data, HMAC-SHA-256); test case 5 is truncated to 128 bits.
RFC4231 = (
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data. The key "
                    b"needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def verifier():
    # The Ed25519 key is only registered: an HMAC under its key id is an algorithm swap.
    return cmd.CommandVerifier(UNIT, [cmd.BackendKey(KID, cose.ALG_HMAC_256_256, KEY),
                                      cmd.BackendKey(ED_KID, cose.ALG_EDDSA, b"\x01" * 32)])


def command(code=cmd.CMD_TRACK_STOLEN, counter=1, unit=UNIT, not_before=NOW - 60, not_after=NOW + 300, args=None):
    if args is None:
        args = {cmd.CMD_TRACK_STOLEN: {cmd.ARG_CASE: "police-2026-0042", cmd.ARG_UNTIL: NOW + 3600},
                cmd.CMD_LAWFUL_REQUEST: {cmd.ARG_CASE: "court-order-7", cmd.ARG_UNTIL: NOW + 7200}}.get(code, {})
    return cmd.Command(unit, counter, not_before, not_after, code, args)


def maced(c, key=KEY, kid=KID):
    return cmd.seal_command(c, kid, cose.ALG_HMAC_256_256, key)


def state(unit):
    return (sorted((k, unit.sessions[k].sid, unit.sessions[k].end_ms) for k in unit.sessions),
            unit.command_counter, unit.indicator, unit.status_interval_s)


def responses(actions):
    return [m for m in publishes(actions) if m.type == messages.T_COMMAND_RESPONSE]


def rejected(unit, data, reason, now=NOW):
    """The unit refuses data with reason, sends only the response, and changes nothing."""
    before = state(unit)
    actions = unit.handle(Downlink(data), now * 1000)
    assert [(r.result, r.reason) for r in responses(actions)] == [(messages.RESULT_REJECTED, reason)]
    assert len(actions) == 1 and state(unit) == before
    return responses(actions)[0]


def refused_by_verifier(data, reason, last_counter=0, now=NOW):
    err = raises(cmd.CommandRejected, verifier().verify, data, now, last_counter)
    assert err.reason == reason, (cmd.REASON_NAMES.get(err.reason), str(err))
    assert isinstance(err, ProtocolError)
    return err


def test_hmac_sha256_matches_rfc4231():
    for key, data, expected in RFC4231:
        mac = cose.hmac_sha256(key, data)
        assert len(mac) == 32
        assert mac.hex()[:len(expected)] == expected, key


# Key lengths around the 64-byte block (computed with CPython's hmac module): shorter keys
# are padded, longer ones hashed first.
KEY_LENGTH_EDGES = (
    (0, "19a375b2a4e712f40813a045cc56ffde44db0c7dde397dde513d1b2751ce109d"),
    (63, "6b1e41cff382a0489bc243d139a7a9773bc897239ddafe87e6358f62154d418d"),
    (64, "cfbf24117f7527bd9540d6b201348c7fef857038bc534af260d630d86cceb74f"),
    (65, "9d1ca6cf8d18f1f43613d366a93ed6a90ce41ce1fe1dcb3ae054ff8f2da2fd71"),
    (100, "73827b2773ed458cfe69ea10bfb1a9652e8eb95feb2875ce15f240493208a936"),
    (128, "5d137a1c66d3c010ee31e3ea1e179cde695caefa6bd28ba7df1f187d89109086"),
)


def test_hmac_sha256_at_key_lengths_around_the_block_size():
    for n, expected in KEY_LENGTH_EDGES:
        assert cose.hmac_sha256(bytes(range(n)), b"key length edge").hex() == expected, n


def test_hmac_sha256_depends_on_key_and_data():
    mac = cose.hmac_sha256(KEY, b"data")
    assert mac != cose.hmac_sha256(KEY, b"datA") and mac != cose.hmac_sha256(KEY[:-1], b"data")
    assert mac == cose.hmac_sha256(KEY, b"data")


def test_constant_time_equal():
    assert cose.constant_time_equal(b"abc", b"abc") and cose.constant_time_equal(b"", b"")
    assert not cose.constant_time_equal(b"abc", b"abd") and not cose.constant_time_equal(b"abc", b"ab")


def test_mac0_parses_and_verifies_bound_to_its_aad():
    data = cose.mac0(b"payload", KID, b"topic", KEY)
    envelope = cose.parse(data)
    assert (envelope.tag, envelope.alg, envelope.kid, envelope.payload) == (
        cose.TAG_MAC0, cose.ALG_HMAC_256_256, KID, b"payload")
    assert cose.verify(envelope, b"topic", cose.ALG_HMAC_256_256, KEY) == b"payload"
    raises_with(cose.CoseError, "does not verify", cose.verify, envelope, b"other", cose.ALG_HMAC_256_256, KEY)
    raises_with(cose.CoseError, "does not verify", cose.verify, envelope, b"topic", cose.ALG_HMAC_256_256, KEY[1:])
    raises_with(cose.CoseError, "does not match", cose.verify, envelope, b"topic", cose.ALG_EDDSA, KEY)


def test_cose_parse_refuses_malformed_envelopes():
    protected = cbor.encode({cose.H_ALG: cose.ALG_HMAC_256_256})
    good = [protected, {cose.H_KID: KID}, b"p", b"t" * 32]
    assert cose.parse(cbor.encode(cbor.Tagged(cose.TAG_MAC0, good))).kid == KID
    cases = (
        (cbor.encode(good), "not a tagged"),
        (cbor.encode(cbor.Tagged(cose.TAG_MAC0, good[:3])), "array of 4"),
        (cbor.encode(cbor.Tagged(cose.TAG_MAC0, [protected, {cose.H_KID: KID}, "p", b"t"])), "wrong types"),
        (cbor.encode(cbor.Tagged(cose.TAG_MAC0, [cbor.encode({cose.H_ALG: 5, cose.H_KID: KID}), {}, b"p", b"t"])),
         "exactly the algorithm"),
        (cbor.encode(cbor.Tagged(cose.TAG_MAC0, [b"", {}, b"p", b"t"])), "exactly the algorithm"),
        (cbor.encode(cbor.Tagged(cose.TAG_MAC0, [protected, {cose.H_IV: b"x"}, b"p", b"t"])), "only a key id"),
        (cbor.encode(cbor.Tagged(cose.TAG_MAC0, [protected, {cose.H_KID: "kid"}, b"p", b"t"])), "only a key id"),
    )
    for data, text in cases:
        raises_with(cose.CoseError, text, cose.parse, data)
    raises_with(ProtocolError, "tag 16", cose.parse, cbor.encode(cbor.Tagged(cose.TAG_ENCRYPT0, good)))
    raises_with(ProtocolError, "cap", cose.parse, cose.mac0(b"x" * 1100, KID, b"", KEY))


def test_encrypt0_structure_round_trips_with_a_seal_function():
    def seal(iv, plaintext, enc_structure):
        return bytes(b ^ iv[0] for b in plaintext) + cose.hmac_sha256(KEY, enc_structure)[:16]

    def open_(iv, ciphertext, enc_structure):
        if not cose.constant_time_equal(ciphertext[-16:], cose.hmac_sha256(KEY, enc_structure)[:16]):
            raise cose.CoseError("bad tag")
        return bytes(b ^ iv[0] for b in ciphertext[:-16])

    iv = b"\x07" * 12
    sealed = cose.encrypt0(b"secret", cose.ALG_A128GCM, iv, b"aad", seal)
    assert b"secret" not in sealed
    assert cose.decrypt0(sealed, cose.ALG_A128GCM, b"aad", open_) == b"secret"
    raises(cose.CoseError, cose.decrypt0, sealed, cose.ALG_A128GCM, b"other", open_)
    raises_with(cose.CoseError, "algorithm", cose.decrypt0, sealed, cose.ALG_A256GCM, b"aad", open_)
    short = cose.encrypt0(b"secret", cose.ALG_A128GCM, b"\x07" * 8, b"aad", seal)
    raises_with(cose.CoseError, "12-byte IV", cose.decrypt0, short, cose.ALG_A128GCM, b"aad", open_)


def test_command_encoding_round_trips():
    c = command(cmd.CMD_LAWFUL_REQUEST, 12)
    decoded = cmd.decode_command(cmd.encode_command(c))
    assert (decoded.unit, decoded.counter, decoded.not_before, decoded.not_after, decoded.code) == (
        UNIT, 12, NOW - 60, NOW + 300, cmd.CMD_LAWFUL_REQUEST)
    assert decoded.args == {cmd.ARG_CASE: "court-order-7", cmd.ARG_UNTIL: NOW + 7200}
    assert cmd.downlink_topic(UNIT) == "tcu/v1/unit-0001/down"


def test_decode_command_refuses_malformed_payloads():
    head = cmd.VERSION * 8 + cmd.T_COMMAND
    cases = (
        (b"\xff", "command payload"),
        (cbor.encode([head, UNIT, 1, 0, 1, 1]), "not a version 1"),
        (cbor.encode([head + 8, UNIT, 1, 0, 1, 5, {4: 1}]), "not a version 1"),
        (cbor.encode([head, 7, 1, 0, 1, 5, {4: 1}]), "wrong type"),
        (cbor.encode([head, UNIT, -1, 0, 1, 5, {4: 1}]), "unsigned"),
        (cbor.encode([head, UNIT, True, 0, 1, 5, {4: 1}]), "unsigned"),
        (cbor.encode([head, UNIT, 1, 0, 1, 99, {}]), "unknown command 99"),
        (cbor.encode([head, UNIT, 1, 0, 1, 5, {9: 1}]), "unknown or mistyped"),
        (cbor.encode([head, UNIT, 1, 0, 1, 5, {4: "300"}]), "unknown or mistyped"),
        (cbor.encode([head, UNIT, 1, 0, 1, 1, {1: "case"}]), "needs argument 2"),
        # a case the session start message could not carry (tcu.cddl: 1..64 bytes)
        (cbor.encode([head, UNIT, 1, 0, 1, 1, {1: "", 2: 9}]), "case reference"),
        (cbor.encode([head, UNIT, 1, 0, 1, 2, {1: "x" * 65, 2: 9}]), "case reference"),
        (cbor.encode([head, UNIT, 1, 0, 1, 5, {4: 86401}]), "status interval"),
    )
    for data, text in cases:
        err = raises_with(cmd.CommandRejected, text, cmd.decode_command, data)
        assert err.reason == cmd.R_MALFORMED


def test_verifier_accepts_an_authentic_fresh_command():
    got = verifier().verify(maced(command(counter=3)), NOW, 2)
    assert (got.unit, got.counter, got.code) == (UNIT, 3, cmd.CMD_TRACK_STOLEN)
    assert got.args[cmd.ARG_CASE] == "police-2026-0042"
    assert verifier().verify(maced(command(not_before=NOW, not_after=NOW)), NOW, 0).counter == 1


def test_verifier_refuses_forged_commands():
    good = maced(command())
    for i in (len(good) - 1, len(good) - 40, 12):
        forged = bytearray(good)
        forged[i] ^= 1
        err = raises(cmd.CommandRejected, verifier().verify, bytes(forged), NOW, 0)
        assert err.reason in (cmd.R_UNAUTHENTIC, cmd.R_MALFORMED)
    refused_by_verifier(good[:-1] + bytes([good[-1] ^ 0x80]), cmd.R_UNAUTHENTIC)
    refused_by_verifier(maced(command(), key=b"\x00" * 32), cmd.R_UNAUTHENTIC)
    refused_by_verifier(maced(command(), kid=b"nobody"), cmd.R_UNAUTHENTIC)
    refused_by_verifier(good[:-5], cmd.R_MALFORMED)
    refused_by_verifier(cbor.encode(cmd.encode_command(command())), cmd.R_MALFORMED)


def test_verifier_refuses_an_algorithm_swap():
    refused_by_verifier(maced(command(), key=b"\x01" * 32, kid=ED_KID), cmd.R_ALGORITHM)


def test_verifier_refuses_replayed_commands():
    data = maced(command(counter=5))
    assert verifier().verify(data, NOW, 4).counter == 5
    refused_by_verifier(data, cmd.R_REPLAYED, last_counter=5)
    err = refused_by_verifier(data, cmd.R_REPLAYED, last_counter=9)
    assert err.counter == 5


def test_verifier_refuses_expired_and_not_yet_valid_commands():
    data = maced(command(not_before=NOW - 600, not_after=NOW - 1))
    refused_by_verifier(data, cmd.R_EXPIRED)
    assert verifier().verify(data, NOW - 1, 0).counter == 1
    refused_by_verifier(maced(command(not_before=NOW + 1)), cmd.R_NOT_YET_VALID)


def test_verifier_refuses_commands_for_another_unit():
    # Sealed for the other unit's topic: the AAD differs, so it does not verify here.
    refused_by_verifier(maced(command(unit="unit-0002")), cmd.R_UNAUTHENTIC)
    # Sealed over this unit's topic but naming another unit.
    payload = cmd.encode_command(command(unit="unit-0002", counter=7))
    err = refused_by_verifier(cose.mac0(payload, KID, cmd.downlink_topic(UNIT).encode(), KEY), cmd.R_WRONG_UNIT)
    assert err.counter == 7


def test_sealing_with_a_signature_algorithm_needs_a_sign_function():
    raises_with(ProtocolError, "sign function", cmd.seal_command, command(), ED_KID, cose.ALG_EDDSA, None)


def test_unit_starts_tracking_on_an_hmac_command_persisting_the_counter_first():
    unit = gnss_unit(verifier=verifier())
    actions = unit.handle(Downlink(maced(command())), NOW * 1000)
    assert isinstance(actions[0], PersistCounter) and actions[0].counter == 1
    assert [type(a) for a in actions] == [PersistCounter, Publish, Publish, Indicator]
    start = publishes(actions)[0]
    assert (start.type, start.purpose, start.trigger, start.case) == (
        messages.T_SESSION_START, sv.P_STOLEN_VEHICLE_TRACKING, sv.STOLEN, "police-2026-0042")
    assert [(r.result, r.sid, r.counter) for r in responses(actions)] == [(messages.RESULT_ACCEPTED, start.sid, 1)]
    assert unit.command_counter == 1 and unit.indicator
    assert unit.next_timer() == (NOW + 3600) * 1000


def test_unit_lawful_request_reports_position_only_and_ends_at_expiry():
    unit = gnss_unit(verifier=verifier())
    unit.handle(Downlink(maced(command(cmd.CMD_LAWFUL_REQUEST))), NOW * 1000)
    raises_with(Refused, "occupant", unit.handle, Cancel(sv.LAWFUL), NOW * 1000 + 5)
    report = publishes(unit.handle(FixEvent(fix_at(NOW * 1000)), NOW * 1000))[0]
    assert (report.lat_e7, report.lon_e7, report.purpose) == (LAT, LON, sv.P_LAWFUL_REQUEST)
    assert report.speed_kmh is None and report.ext == {}
    ended = publishes(unit.handle(Tick(), (NOW + 7200) * 1000))
    assert [(m.type, m.reason) for m in ended] == [(messages.T_SESSION_END, tr.REASON_TIME_BOUND)]
    assert not unit.sessions and not unit.indicator


def test_unit_backend_cancels_only_what_the_backend_started():
    unit = gnss_unit(verifier=verifier())
    unit.handle(Downlink(maced(command(counter=1))), NOW * 1000)
    unit.handle(TriggerOn(sv.CRASH), NOW * 1000)
    crash_sid, stolen_sid = unit.sessions[sv.CRASH].sid, unit.sessions[sv.STOLEN].sid
    no = responses(unit.handle(Downlink(maced(command(cmd.CMD_CANCEL, 2, args={cmd.ARG_SESSION: crash_sid}))),
                               NOW * 1000))
    assert [(r.result, r.reason) for r in no] == [(messages.RESULT_REJECTED, cmd.R_POLICY)]
    assert sv.CRASH in unit.sessions and unit.command_counter == 2  # the counter is used up, nothing else
    actions = unit.handle(Downlink(maced(command(cmd.CMD_CANCEL, 3, args={cmd.ARG_SESSION: stolen_sid}))),
                          NOW * 1000)
    ended = [m for m in publishes(actions) if m.type == messages.T_SESSION_END]
    assert [(m.sid, m.reason) for m in ended] == [(stolen_sid, tr.REASON_BACKEND_CANCELLED)]
    assert responses(actions)[0].result == messages.RESULT_ACCEPTED
    assert sv.STOLEN not in unit.sessions and sv.CRASH in unit.sessions
    assert of_type(actions, PersistCounter)[0].counter == 3


def test_unit_configure_and_locate_now():
    unit = gnss_unit(verifier=verifier())
    actions = unit.handle(Downlink(maced(command(cmd.CMD_CONFIGURE, 1, args={cmd.ARG_STATUS_INTERVAL: 60}))),
                          NOW * 1000)
    assert unit.status_interval_s == 60 and responses(actions)[0].sid == 0
    unit.handle(TriggerOn(sv.THEFT), NOW * 1000)
    unit.handle(FixEvent(fix_at(NOW * 1000)), NOW * 1000)
    assert unit.handle(FixEvent(fix_at(NOW * 1000 + 3000)), NOW * 1000 + 3000) == []  # period is 10 s
    sid = unit.sessions[sv.THEFT].sid
    unit.handle(Downlink(maced(command(cmd.CMD_LOCATE_NOW, 2, args={cmd.ARG_SESSION: sid}))), NOW * 1000 + 3500)
    located = [a for a in unit.handle(FixEvent(fix_at(NOW * 1000 + 4000)), NOW * 1000 + 4000) if a.located]
    assert len(located) == 1 and located[0].sid == sid


def test_unit_renewed_request_extends_the_running_session():
    unit = gnss_unit(verifier=verifier())
    unit.handle(Downlink(maced(command(counter=1))), NOW * 1000)
    sid = unit.sessions[sv.STOLEN].sid
    args = {cmd.ARG_CASE: "police-2026-0042", cmd.ARG_UNTIL: NOW + 7200}
    actions = unit.handle(Downlink(maced(command(counter=2, args=args))), NOW * 1000 + 1000)
    assert responses(actions)[0].sid == sid and len(publishes(actions)) == 1  # no second session start
    assert unit.next_timer() == (NOW + 7200) * 1000


def test_unit_refuses_tracking_that_would_end_before_it_starts():
    unit = gnss_unit(verifier=verifier())
    args = {cmd.ARG_CASE: "late", cmd.ARG_UNTIL: NOW}
    actions = unit.handle(Downlink(maced(command(args=args))), NOW * 1000)
    assert [(r.result, r.reason) for r in responses(actions)] == [(messages.RESULT_REJECTED, cmd.R_POLICY)]
    assert not unit.sessions and unit.command_counter == 1


def test_unit_refused_commands_change_nothing():
    unit = gnss_unit(verifier=verifier())
    good = maced(command(counter=5))
    rejected(unit, good[:-1] + bytes([good[-1] ^ 1]), cmd.R_UNAUTHENTIC)
    rejected(unit, maced(command(counter=5), key=b"\x00" * 32), cmd.R_UNAUTHENTIC)
    rejected(unit, maced(command(counter=5, not_before=NOW - 600, not_after=NOW - 1)), cmd.R_EXPIRED)
    rejected(unit, maced(command(counter=5, not_before=NOW + 60, not_after=NOW + 600)), cmd.R_NOT_YET_VALID)
    rejected(unit, maced(command(counter=5, unit="unit-0002")), cmd.R_UNAUTHENTIC)
    payload = cmd.encode_command(command(unit="unit-0002", counter=5))
    rejected(unit, cose.mac0(payload, KID, cmd.downlink_topic(UNIT).encode(), KEY), cmd.R_WRONG_UNIT)
    rejected(unit, maced(command(counter=5), key=b"\x01" * 32, kid=ED_KID), cmd.R_ALGORITHM)
    rejected(unit, good[:-5], cmd.R_MALFORMED)
    long_case = {cmd.ARG_CASE: "x" * 65, cmd.ARG_UNTIL: NOW + 3600}  # no session start could carry it
    rejected(unit, maced(command(counter=5, args=long_case)), cmd.R_MALFORMED)
    assert responses(unit.handle(Downlink(good), NOW * 1000))[0].result == messages.RESULT_ACCEPTED
    rejected(unit, good, cmd.R_REPLAYED)
    rejected(unit, maced(command(counter=4)), cmd.R_REPLAYED)


def test_unit_replay_window_survives_a_restart():
    unit = gnss_unit(verifier=verifier())
    good = maced(command(counter=9))
    persisted = [a.counter for a in unit.handle(Downlink(good), NOW * 1000) if isinstance(a, PersistCounter)]
    assert persisted == [9]
    restarted = gnss_unit(verifier=verifier(), command_counter=persisted[-1])
    rejected(restarted, good, cmd.R_REPLAYED, now=NOW + 10)


def test_unit_without_keys_accepts_no_command():
    rejected(Unit(), maced(command()), cmd.R_UNAUTHENTIC)
