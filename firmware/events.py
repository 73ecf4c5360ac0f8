"""Events the unit takes and actions it returns. Plain classes: portable to MicroPython."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .fix import Fix


class TriggerOn:
    """A trigger input became active (airbag fired, alarm sounding, button pressed).
    test: a test call (eCall's testCall): marked as such on the wire, never a real emergency."""

    __slots__ = ("kind", "test")

    def __init__(self, kind: int, test: bool = False) -> None:
        self.kind = kind
        self.test = test


class TriggerOff:
    """A trigger input cleared (alarm disarmed, button released)."""

    __slots__ = ("kind",)

    def __init__(self, kind: int) -> None:
        self.kind = kind


class Cancel:
    """The occupant asks to end a session (false alarm)."""

    __slots__ = ("kind",)

    def __init__(self, kind: int) -> None:
        self.kind = kind


class FixEvent:
    """The HAL decoded a fix. The unit drops it at once unless a session needs it."""

    __slots__ = ("fix",)

    def __init__(self, fix: "Fix") -> None:
        self.fix = fix


class Downlink:
    """A message arrived on the unit's downlink topic: a COSE-protected command, or a forgery."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Tick:
    """Time passed: the unit's timer (next_timer()) is due."""

    __slots__ = ()


class Shutdown:
    """The unit is about to stop: every session ends and is wiped."""

    __slots__ = ()


class Publish:
    """Send payload on the uplink. located: it carries a position."""

    __slots__ = ("payload", "priority", "sid", "seq", "located")

    def __init__(self, payload: bytes, priority: int, sid: int, seq: int, located: bool) -> None:
        self.payload = payload
        self.priority = priority
        self.sid = sid
        self.seq = seq
        self.located = located


class PersistCounter:
    """Store the last accepted command counter durably BEFORE carrying out later actions:
    after a restart the unit must still refuse every command up to it."""

    __slots__ = ("counter",)

    def __init__(self, counter: int) -> None:
        self.counter = counter


class Indicator:
    """Drive the privacy indicator: on exactly while a location session is active."""

    __slots__ = ("on",)

    def __init__(self, on: bool) -> None:
        self.on = on
