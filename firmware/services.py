"""The service table: which triggers open a location session, for what purpose, how often
it may sample, for how long, and which fields it may send. Overridable per unit, but only
to narrow a service (narrow_services).
"""

from .errors import UsageError

# Trigger inputs (what happened), wire codes.
CRASH = 1
THEFT = 2
SOS = 3
ROADSIDE = 4
ASSIST = 5
STOLEN = 6  # an authenticated backend command: stolen-vehicle tracking
LAWFUL = 7  # an authenticated backend command: a lawful request
TRIGGER_NAMES = {
    CRASH: "crash", THEFT: "theft", SOS: "sos", ROADSIDE: "roadside", ASSIST: "assist",
    STOLEN: "stolen", LAWFUL: "lawful",
}
LOCAL_TRIGGERS = (CRASH, THEFT, SOS, ROADSIDE, ASSIST)  # inputs a person or the car can raise
TRIGGERS_BY_NAME = {TRIGGER_NAMES[code]: code for code in LOCAL_TRIGGERS}

# Purposes (why location is disclosed), wire codes.
P_CRASH_NOTIFICATION = 1
P_THEFT_TRACKING = 2
P_EMERGENCY_CALL = 3
P_ROADSIDE_ASSISTANCE = 4
P_ROUTE_ASSISTANCE = 5
P_STOLEN_VEHICLE_TRACKING = 6
P_LAWFUL_REQUEST = 7
PURPOSE_NAMES = {
    P_CRASH_NOTIFICATION: "crash_notification",
    P_THEFT_TRACKING: "theft_tracking",
    P_EMERGENCY_CALL: "emergency_call",
    P_ROADSIDE_ASSISTANCE: "roadside_assistance",
    P_ROUTE_ASSISTANCE: "route_assistance",
    P_STOLEN_VEHICLE_TRACKING: "stolen_vehicle_tracking",
    P_LAWFUL_REQUEST: "lawful_request",
}

# Fields a purpose may send, as bits: position and time are the minimum of any report.
F_POSITION = 1
F_MOTION = 2  # speed and course
F_ALTITUDE = 4
F_QUALITY = 8  # fix mode, satellites, HDOP

# What ends a session besides its bounds.
RUN_TO_BOUND = 0  # the trigger latches: releasing the input does not end it (crash)
WHILE_HELD = 1  # tracking follows the input: it ends when the input clears (theft alarm)
REMOTE = 2  # started and ended only by authenticated backend commands, or its bound


class Service:
    __slots__ = (
        "trigger", "purpose", "period_s", "bound_s", "max_samples", "fields",
        "priority", "mode", "occupant_can_cancel",
    )

    def __init__(
        self, trigger: int, purpose: int, period_s: int, bound_s: int, max_samples: int,
        fields: int, priority: int, mode: int, occupant_can_cancel: bool,
    ) -> None:
        self.trigger = trigger
        self.purpose = purpose
        self.period_s = period_s  # minimum time between two samples
        self.bound_s = bound_s  # the session ends this long after it started, at the latest
        self.max_samples = max_samples  # ... or after this many located reports
        self.fields = fields
        self.priority = priority  # 0 is highest: never evicted, sent first
        self.mode = mode
        self.occupant_can_cancel = occupant_can_cancel

    @property
    def name(self) -> str:
        return TRIGGER_NAMES[self.trigger]


def default_services() -> "dict[int, Service]":
    """The defaults: crash tracking follows the 5-15 s crash traces of fleet units, then
    keeps going long enough for responders; assistance needs one position, nothing more."""
    everything = F_POSITION | F_MOTION | F_ALTITUDE | F_QUALITY
    return {
        CRASH: Service(CRASH, P_CRASH_NOTIFICATION, 2, 600, 320, everything, 0, RUN_TO_BOUND, False),
        SOS: Service(SOS, P_EMERGENCY_CALL, 5, 900, 200, F_POSITION | F_MOTION | F_ALTITUDE, 0, RUN_TO_BOUND, True),
        THEFT: Service(THEFT, P_THEFT_TRACKING, 10, 4 * 3600, 1500, F_POSITION | F_MOTION, 1, WHILE_HELD, False),
        ROADSIDE: Service(ROADSIDE, P_ROADSIDE_ASSISTANCE, 0, 120, 1, F_POSITION, 2, RUN_TO_BOUND, True),
        ASSIST: Service(ASSIST, P_ROUTE_ASSISTANCE, 0, 120, 1, F_POSITION, 2, RUN_TO_BOUND, True),
        STOLEN: Service(STOLEN, P_STOLEN_VEHICLE_TRACKING, 30, 72 * 3600, 9000, F_POSITION | F_MOTION, 1, REMOTE,
                        False),
        LAWFUL: Service(LAWFUL, P_LAWFUL_REQUEST, 60, 24 * 3600, 1500, F_POSITION, 1, REMOTE, False),
    }


def trigger_code(name: str) -> int:
    """The trigger code for a name such as 'crash'; raises UsageError for an unknown one."""
    code = TRIGGERS_BY_NAME.get(name)  # type: int | None
    if code is None and name.lower() in TRIGGERS_BY_NAME:
        raise UsageError("unknown trigger %r: trigger names are lower case (%s)" % (name, name.lower()))
    remote = {"stolen": "stolen-vehicle tracking", "lawful": "a lawful request"}.get(name.lower())
    if code is None and remote is not None:
        raise UsageError("%r is not an input: %s is started only by a signed backend command "
                         "(tcu backend command)" % (name, remote))
    if code is None:
        raise UsageError(
            "unknown trigger %r: expected one of %s" % (name, ", ".join(sorted(TRIGGERS_BY_NAME)))
        )
    return code


# Service overrides: a unit's configuration may narrow a service, never widen it.
FIELD_NAMES = {F_POSITION: "position", F_MOTION: "motion", F_ALTITUDE: "altitude", F_QUALITY: "quality"}
FIELDS_BY_NAME = {FIELD_NAMES[bit]: bit for bit in FIELD_NAMES}
SERVICES_BY_NAME = {TRIGGER_NAMES[code]: code for code in TRIGGER_NAMES}  # local and remote
OVERRIDE_KEYS = ("period_s", "bound_s", "max_samples", "fields")


def field_names(fields: int) -> "list[str]":
    """The names of a fields bitmask, in wire order: F_POSITION | F_MOTION -> ['position', 'motion']."""
    return [FIELD_NAMES[bit] for bit in sorted(FIELD_NAMES) if fields & bit]


def service_terms(service: Service) -> "dict[str, object]":
    """A service's overridable terms as plain values (the shape an override takes)."""
    return {"period_s": service.period_s, "bound_s": service.bound_s,
            "max_samples": service.max_samples, "fields": field_names(service.fields)}


def narrow_services(base: "dict[int, Service]", overrides: "dict[str, dict[str, object]]",
                    where: str = "services") -> "dict[int, Service]":
    """A new service table: base with each override applied, e.g.
    {"crash": {"bound_s": 300, "fields": ["position"]}}. base is not modified.

    An override may only narrow its service (the built-in table is the most a purpose may
    disclose): a longer or equal period, a shorter or equal bound, as many or fewer samples,
    a subset of the fields, always with position. Anything else raises UsageError naming the
    key (where.NAME.KEY) and what is allowed.
    """
    if not isinstance(overrides, dict):
        raise UsageError("%s: expected a table of services (%s)" % (where, ", ".join(sorted(SERVICES_BY_NAME))))
    table = dict(base)
    for name in sorted(overrides):
        code = SERVICES_BY_NAME.get(name)
        if code is None or code not in base:
            raise UsageError("%s.%s: unknown service: expected one of %s"
                             % (where, name, ", ".join(sorted(SERVICES_BY_NAME))))
        table[code] = narrow_service(base[code], overrides[name], "%s.%s" % (where, name))
    return table


def narrow_service(base: Service, override: "dict[str, object]", where: str) -> Service:
    """base narrowed by one override (see narrow_services); raises UsageError."""
    if not isinstance(override, dict):
        raise UsageError("%s: expected a table with %s" % (where, ", ".join(OVERRIDE_KEYS)))
    for key in override:
        if key not in OVERRIDE_KEYS:
            raise UsageError("%s.%s: unknown field: expected %s" % (where, key, ", ".join(OVERRIDE_KEYS)))
    bound_s = _whole(override, "bound_s", base.bound_s, where)
    if not 1 <= bound_s <= base.bound_s:
        raise UsageError("%s.bound_s = %d: from 1 to %d s: an override may only shorten a session, never "
                         "disclose location for longer than its purpose allows" % (where, bound_s, base.bound_s))
    period_s = _whole(override, "period_s", base.period_s, where)
    if not base.period_s <= period_s <= bound_s:
        raise UsageError("%s.period_s = %d: from %d to %d s (the bound): an override may only sample less often, "
                         "never more" % (where, period_s, base.period_s, bound_s))
    max_samples = _whole(override, "max_samples", base.max_samples, where)
    if not 1 <= max_samples <= base.max_samples:
        raise UsageError("%s.max_samples = %d: from 1 to %d: an override may only take fewer samples, never more"
                         % (where, max_samples, base.max_samples))
    fields = _fields(override.get("fields"), base, where) if "fields" in override else base.fields
    return Service(base.trigger, base.purpose, period_s, bound_s, max_samples, fields, base.priority,
                   base.mode, base.occupant_can_cancel)


def _whole(override: "dict[str, object]", key: str, default: int, where: str) -> int:
    value = override.get(key, default)
    if type(value) is not int:  # bool is an int subclass: refused too
        raise UsageError("%s.%s = %r: expected a whole number" % (where, key, value))
    return value


def _fields(names: object, base: Service, where: str) -> int:
    allowed = ", ".join(field_names(base.fields))
    if not isinstance(names, list) or not names:
        raise UsageError("%s.fields: expected a list of field names, a subset of [%s]" % (where, allowed))
    fields = 0
    for name in names:
        bit = FIELDS_BY_NAME.get(name) if isinstance(name, str) else None
        if bit is None:
            raise UsageError("%s.fields: unknown field %r: expected a subset of [%s]" % (where, name, allowed))
        if not bit & base.fields:
            raise UsageError("%s.fields: %r is not sent by this service: an override may only drop fields, "
                              "never add one (allowed: %s)" % (where, name, allowed))
        fields |= bit
    if not fields & F_POSITION:
        raise UsageError("%s.fields: \"position\" is required: a report is a position" % where)
    return fields

