"""Service overrides (services.narrow_services): a unit's configuration may narrow a
service, never widen it. Runs under pytest on CPython and under scripts/micropython_tests.py
on MicroPython.
"""

from portable_support import T0, feed_fixes, publishes, raises_with

from tcu.firmware import services as sv
from tcu.firmware.errors import UsageError
from tcu.firmware.events import TriggerOn
from tcu.firmware.unit import Unit
from tcu.protocol import messages


def narrow(overrides):
    return sv.narrow_services(sv.default_services(), overrides)


def test_no_override_is_the_built_in_table():
    base, table = sv.default_services(), narrow({})
    for code in base:
        assert sv.service_terms(table[code]) == sv.service_terms(base[code])


def test_an_override_narrows_only_what_it_names():
    table = narrow({"crash": {"period_s": 4, "bound_s": 300, "max_samples": 10, "fields": ["position", "motion"]}})
    crash = table[sv.CRASH]
    assert (crash.period_s, crash.bound_s, crash.max_samples) == (4, 300, 10)
    assert crash.fields == sv.F_POSITION | sv.F_MOTION
    assert (crash.purpose, crash.priority, crash.mode) == (sv.P_CRASH_NOTIFICATION, 0, sv.RUN_TO_BOUND)
    assert sv.service_terms(table[sv.SOS]) == sv.service_terms(sv.default_services()[sv.SOS])
    assert sv.default_services()[sv.CRASH].bound_s == 600  # the built-in table is untouched


def test_remote_services_can_be_narrowed_too():
    table = narrow({"lawful": {"bound_s": 3600}, "stolen": {"fields": ["position"]}})
    assert table[sv.LAWFUL].bound_s == 3600 and table[sv.STOLEN].fields == sv.F_POSITION


def test_equal_terms_are_accepted():
    terms = sv.service_terms(sv.default_services()[sv.THEFT])
    assert sv.service_terms(narrow({"theft": terms})[sv.THEFT]) == terms


def test_widening_is_refused_with_the_reason():
    raises_with(UsageError, "services.crash.bound_s = 900: from 1 to 600 s", narrow, {"crash": {"bound_s": 900}})
    raises_with(UsageError, "never disclose location for longer", narrow, {"crash": {"bound_s": 900}})
    raises_with(UsageError, "services.crash.period_s = 1: from 2 to 600 s", narrow, {"crash": {"period_s": 1}})
    raises_with(UsageError, "services.sos.max_samples = 201: from 1 to 200", narrow, {"sos": {"max_samples": 201}})
    raises_with(UsageError, "'quality' is not sent by this service", narrow,
                {"sos": {"fields": ["position", "quality"]}})


def test_position_is_required_and_fields_must_be_known():
    raises_with(UsageError, "\"position\" is required", narrow, {"crash": {"fields": ["motion"]}})
    raises_with(UsageError, "unknown field 'heading'", narrow, {"crash": {"fields": ["position", "heading"]}})
    raises_with(UsageError, "services.crash.fields: expected a list", narrow, {"crash": {"fields": "position"}})
    raises_with(UsageError, "services.crash.fields: expected a list", narrow, {"crash": {"fields": []}})


def test_unknown_names_and_wrong_types_are_refused():
    raises_with(UsageError, "services.airbag: unknown service: expected one of assist, crash", narrow, {"airbag": {}})
    raises_with(UsageError, "services.crash.bound: unknown field: expected period_s", narrow, {"crash": {"bound": 1}})
    raises_with(UsageError, "services.crash.bound_s = '300': expected a whole number", narrow,
                {"crash": {"bound_s": "300"}})
    raises_with(UsageError, "expected a whole number", narrow, {"crash": {"max_samples": True}})
    raises_with(UsageError, "expected a whole number", narrow, {"crash": {"bound_s": 300.0}})
    raises_with(UsageError, "services.crash: expected a table", narrow, {"crash": 5})
    raises_with(UsageError, "bound_s = 0: from 1", narrow, {"crash": {"bound_s": 0}})
    raises_with(UsageError, "(the bound)", narrow, {"theft": {"bound_s": 5}})  # period 10 > bound 5


def test_a_unit_follows_the_narrowed_terms():
    unit = Unit(services=narrow({"crash": {"max_samples": 1, "fields": ["position"]}}))
    actions = unit.handle(TriggerOn(sv.CRASH), T0) + feed_fixes(unit, T0, 5)
    msgs = publishes(actions)
    reports = [m for m in msgs if m.type == messages.T_REPORT]
    assert len(reports) == 1 and reports[0].speed_kmh is None and not reports[0].ext
    assert msgs[-1].type == messages.T_SESSION_END and not unit.sessions


def test_field_names_round_trip():
    for code, service in sv.default_services().items():
        names = sv.field_names(service.fields)
        assert names[0] == "position"
        assert narrow({sv.TRIGGER_NAMES[code]: {"fields": names}})[code].fields == service.fields
