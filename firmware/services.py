"""The service table: which triggers open a location session, for what purpose, how often
it may sample, for how long, and which fields it may send. Overridable per unit.
"""

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
    from .errors import UsageError

    code = TRIGGERS_BY_NAME.get(name)  # type: int | None
    if code is None:
        raise UsageError(
            "unknown trigger %r: expected one of %s" % (name, ", ".join(sorted(TRIGGERS_BY_NAME)))
        )
    return code
