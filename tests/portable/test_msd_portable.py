"""The eCall MSD in the portable core: the values from a session's own fixes (no ASN.1 here: the
host's encoder is stood in for by one that records the values), the session start that carries
it, and the test-call mark."""

from portable_support import LAT, LON, T0, fix_at, publishes, raises

from tcu.firmware import services as sv
from tcu.firmware.events import FixEvent, TriggerOn
from tcu.firmware.fix import MODE_2D, Fix
from tcu.firmware.msd import DIRECTION_UNKNOWN, MsdValues, mas_of_e7
from tcu.firmware.unit import Unit
from tcu.protocol import cbor, messages


class Recorder:
    def __init__(self):
        self.values = []

    def __call__(self, values):
        self.values.append(values)
        return bytes([0x02, 0x01, len(self.values)])  # stands in for the UPER bytes


def starts(actions):
    return [m for m in publishes(actions) if m.type == messages.T_SESSION_START]


def test_mas_conversion_is_exact_to_the_milliarcsecond():
    assert mas_of_e7(10000000) == 3600000 and mas_of_e7(-900000000) == -324000000
    assert mas_of_e7(1800000000) == 648000000 and mas_of_e7(25) == 9 and mas_of_e7(-14) == -5
    assert mas_of_e7(0) == 0 and mas_of_e7(1) == 0 and mas_of_e7(2) == 1


def test_first_msd_has_no_recent_positions_later_ones_do():
    encoder = Recorder()
    unit = Unit(msd_encoder=encoder)
    first = starts(unit.handle(TriggerOn(sv.CRASH), T0))
    assert len(first) == 1 and first[0].msd is None and not first[0].test  # sent at once, no fix yet
    out = unit.handle(FixEvent(fix_at(T0 + 1000)), T0 + 1000)
    msgs = publishes(out)
    assert [m.type for m in msgs] == [messages.T_SESSION_START, messages.T_REPORT]  # the MSD, then the report
    assert msgs[0].msd == b"\x02\x01\x01" and msgs[0].sid == first[0].sid and msgs[0].time == T0 // 1000
    values = encoder.values[0]
    assert values.message_id == 1 and values.automatic and not values.test and values.trusted
    assert values.n1 is None and values.n2 is None  # nothing kept while dormant
    assert (values.lat_mas, values.lon_mas) == (mas_of_e7(LAT), mas_of_e7(LON))
    assert values.timestamp == (T0 + 1000) // 1000 and values.direction == 45  # 90.00 deg in 2-degree steps
    assert unit.session_msd(first[0].sid) == b"\x02\x01\x01"
    assert len(encoder.values) == 1  # a trusted MSD is not resent at every fix
    unit.handle(FixEvent(fix_at(T0 + 3000)), T0 + 3000)
    assert len(encoder.values) == 1


def test_an_untrusted_first_fix_is_followed_by_a_trusted_msd():
    encoder = Recorder()
    unit = Unit(msd_encoder=encoder)
    unit.handle(TriggerOn(sv.SOS, True), T0)
    weak = Fix(T0 + 1000, LAT, LON, MODE_2D)
    unit.handle(FixEvent(weak), T0 + 1000)
    msgs = starts(unit.handle(FixEvent(Fix(T0 + 6000, LAT + 900, LON - 900, 3, hdop_c=90)), T0 + 6000))
    assert [v.trusted for v in encoder.values] == [False, True]
    assert [v.message_id for v in encoder.values] == [1, 2]
    first, second = encoder.values
    assert not first.automatic and first.test and first.direction == DIRECTION_UNKNOWN
    assert second.n1 == (-3, 3) and second.n2 is None  # 900e-7 deg = 324 mas: 3 steps of 100 mas back
    assert msgs[0].test and msgs[0].msd == b"\x02\x01\x02"


def test_no_msd_for_other_purposes_or_without_an_encoder():
    encoder = Recorder()
    unit = Unit(msd_encoder=encoder)
    unit.handle(TriggerOn(sv.THEFT), T0)
    assert not starts(unit.handle(FixEvent(fix_at(T0 + 1000)), T0 + 1000)) and not encoder.values
    plain = Unit()
    plain.handle(TriggerOn(sv.CRASH), T0)
    assert not starts(plain.handle(FixEvent(fix_at(T0 + 1000)), T0 + 1000))


def test_session_start_extension_round_trip_and_refusals():
    data = messages.encode_session_start(2, 1, 1, 1778745600, 1, None, b"\x02\x01\x00", True)
    msg = messages.decode(data)
    assert msg.msd == b"\x02\x01\x00" and msg.test and msg.case is None
    cased = messages.decode(messages.encode_session_start(3, 2, 6, 1778745600, 6, "ref-1", test=True))
    assert cased.case == "ref-1" and cased.test and cased.msd is None
    head = [messages.VERSION * 8 + messages.T_SESSION_START, 1, 1, 1, 1778745600, 1]
    for bad in ({}, {1: b""}, {1: bytes(141)}, {2: False}, {3: 0}, {4: 1}, {1: "text"}):
        raises(cbor.DecodeError, messages.decode, cbor.encode(head + [bad]))
    raises(cbor.DecodeError, messages.decode, cbor.encode(head + [{2: True}, "case"]))
    raises(cbor.DecodeError, messages.decode, cbor.encode(head + ["a", "b"]))


def test_values_of_an_unknown_course_and_saturated_deltas():
    far = Fix(T0, LAT + 20000000, LON - 20000000, 3, hdop_c=90)
    values = MsdValues(256, True, False, Fix(T0 + 1000, LAT, LON, 3, hdop_c=90), [far])
    assert values.message_id == 0 and values.n1 == (511, -512) and values.direction == DIRECTION_UNKNOWN
