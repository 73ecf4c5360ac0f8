"""The wire as specified: golden vectors, CDDL conformance of everything the unit sends,
batch delta coding, and the compactness targets."""

from __future__ import annotations

import json

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_check import assert_valid, cddl_errors

from tcu.firmware import services as sv
from tcu.firmware.events import Cancel, FixEvent, Publish, Tick, TriggerOff, TriggerOn
from tcu.firmware.fix import Fix
from tcu.firmware.unit import Refused, Unit
from tcu.hal import iter_fixes
from tcu.protocol import messages
from tcu.tools import golden


def test_golden_vectors_are_what_the_code_produces_and_conform() -> None:
    index = json.loads((golden.GOLDEN_DIR / "index.json").read_text())["vectors"]
    built = golden.build_vectors()
    assert sorted(index) == sorted(built)
    for name, (rule, data, _) in built.items():
        assert (golden.GOLDEN_DIR / (name + ".cbor")).read_bytes() == data, name
        assert bytes.fromhex(index[name]["hex"]) == data
        assert_valid(data, rule)
        cbor2.loads(data)  # a standard decoder reads every one
        if rule == "uplink":
            messages.decode(data)


def test_the_schema_refuses_what_the_decoder_refuses() -> None:
    for items in ([10, 1, 1, 1, 0, 0, 0, 5, 180], [8, 1700000000, 3, 481374300], [13, 5, 7, 1, 99],
                  [9, 1, 1, 9, 1700000000, 1], [12, 1, 1, 1700000000, 0]):
        assert cddl_errors(cbor2.dumps(items)), items


events = st.lists(st.tuples(st.sampled_from(["on", "off", "fix", "tick", "cancel"]),
                            st.sampled_from(sv.LOCAL_TRIGGERS), st.integers(0, 20_000)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(-900000000, 900000000), st.integers(-1800000000, 1800000000))
def test_every_message_the_unit_sends_conforms(script, lat, lon) -> None:
    unit, now = Unit(), 1_700_000_000_000
    for op, kind, step in script:
        now += step
        event = {"on": TriggerOn(kind), "off": TriggerOff(kind), "tick": Tick(), "cancel": Cancel(kind),
                 "fix": FixEvent(Fix(now, lat, lon, 3, 51900, 30000, 35999, 9, 120))}[op]
        try:
            actions = unit.handle(event, now)
        except Refused:
            continue
        for action in actions:
            if isinstance(action, Publish):
                assert_valid(action.payload)


fix_tuples = st.lists(st.tuples(st.integers(0, 30), st.integers(-1000, 1000), st.integers(-1000, 1000),
                                st.integers(-5, 5), st.integers(-10, 10)), min_size=1, max_size=30)


@given(st.integers(-800000000, 800000000), st.integers(-1700000000, 1700000000), fix_tuples)
def test_batches_round_trip_and_conform(lat, lon, steps) -> None:
    fixes, cur = [], (0, lat, lon, 60, 90)
    for ddt, dlat, dlon, dspeed, dcourse in steps:
        cur = (cur[0] + ddt, cur[1] + dlat, cur[2] + dlon, max(0, cur[3] + dspeed), (cur[4] + dcourse) % 180)
        fixes.append(cur)
    payload = messages.encode_batch(7, 2, 2, fixes)
    assert messages.decode(payload).fixes == fixes
    assert_valid(payload)


def _tracking(path: str, period_s: int) -> list[tuple[int, int, int, int, int]]:
    out, last = [], None
    for fix in iter_fixes(path):
        if last is None or fix.time_ms - last >= period_s * 1000:
            last = fix.time_ms
            out.append((fix.time_ms // 1000, fix.lat_e7, fix.lon_e7, (fix.speed_mms or 0) * 36 // 10000,
                        ((fix.course_cdeg or 0) + 100) // 200 % 180))
    return out


def test_a_report_fits_24_bytes_and_a_driving_batch_8_bytes_per_fix() -> None:
    from conftest import DEMO_TRACE

    track = _tracking(str(DEMO_TRACE), 2)  # crash tracking: every 2 s, while driving
    t0 = track[0][0]
    rebased = [(t - t0, lat, lon, spd, crs) for t, lat, lon, spd, crs in track]
    sizes = [len(messages.encode_report(65535, 23, 1, dt, lat, lon, spd, crs)) for dt, lat, lon, spd, crs in rebased]
    assert max(sizes) <= 24  # the envelope: seq < 65536, session < 24, dt < 65536 s
    for start in range(0, len(rebased) - 30, 30):
        chunk = rebased[start:start + 30]
        batch = messages.encode_batch(65535, 23, 1, chunk)
        per_fix = (len(batch) - len(messages.encode_report(65535, 23, 1, *chunk[0]))) / (len(chunk) - 1)
        assert per_fix <= 8, "batch at fix %d: %.1f bytes per fix" % (start, per_fix)
