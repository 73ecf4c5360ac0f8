"""Everything that moves a location session from one state to another lives in this file.

A session of a service is IDLE (no session: nothing sampled, nothing kept), HELD (tracking
while its trigger input is held) or LATCHED (running to its own bound whatever the input
does), or REMOTE (started and ended by authenticated backend commands or its bound).
The table maps (service mode, state, input) to (effect, next state); a pair that is
not in the table is a bug and raises. The README's state diagram is generated from TABLE.
"""

from .errors import TcuError
from .services import REMOTE, RUN_TO_BOUND, WHILE_HELD

TYPE_CHECKING = False
if TYPE_CHECKING:
    Row = tuple[str | None, str]  # (effect, next state)

IDLE = "idle"
HELD = "held"
LATCHED = "latched"
REMOTE_ACTIVE = "remote"

# Inputs
ON = "trigger_on"
OFF = "trigger_off"
TIME_UP = "time_bound"
SAMPLES_DONE = "sample_bound"
CANCEL = "occupant_cancel"
REMOTE_CANCEL = "backend_cancel"
SHUTDOWN = "shutdown"
WINDOW_FAILED = "command_window"  # trusted time showed the starting command was out of its window

# Effects
NOTHING = None
START = "start"
END = "end"
REFUSE = "refuse"

# End reasons, wire codes of the session end message.
REASON_CLEARED = 1
REASON_TIME_BOUND = 2
REASON_SAMPLE_BOUND = 3
REASON_CANCELLED = 4
REASON_SHUTDOWN = 5
REASON_BACKEND_CANCELLED = 6
REASON_COMMAND_WINDOW = 7
REASON_NAMES = {
    REASON_CLEARED: "trigger_cleared",
    REASON_TIME_BOUND: "time_bound",
    REASON_SAMPLE_BOUND: "sample_bound",
    REASON_CANCELLED: "cancelled",
    REASON_SHUTDOWN: "shutdown",
    REASON_BACKEND_CANCELLED: "backend_cancelled",
    REASON_COMMAND_WINDOW: "command_window",
}
END_REASON_OF_INPUT = {
    OFF: REASON_CLEARED,
    TIME_UP: REASON_TIME_BOUND,
    SAMPLES_DONE: REASON_SAMPLE_BOUND,
    CANCEL: REASON_CANCELLED,
    SHUTDOWN: REASON_SHUTDOWN,
    REMOTE_CANCEL: REASON_BACKEND_CANCELLED,
    WINDOW_FAILED: REASON_COMMAND_WINDOW,
}


def _active_rows(state: str, off: "Row", cancel: "Row", remote_cancel: "Row") -> "dict[tuple[str, str], Row]":
    return {
        (state, REMOTE_CANCEL): remote_cancel,
        (state, ON): (NOTHING, state),
        (state, OFF): off,
        (state, TIME_UP): (END, IDLE),
        (state, SAMPLES_DONE): (END, IDLE),
        (state, CANCEL): cancel,
        (state, SHUTDOWN): (END, IDLE),
    }


_IDLE_ROWS = {
    (IDLE, OFF): (NOTHING, IDLE),
    (IDLE, CANCEL): (REFUSE, IDLE),
    (IDLE, REMOTE_CANCEL): (REFUSE, IDLE),
    (IDLE, SHUTDOWN): (NOTHING, IDLE),
}

# (mode, may the occupant cancel) -> {(state, input): (effect, next state)}
TABLE = {}  # type: dict[tuple[int, bool], dict[tuple[str, str], Row]]
for _mode, _state in ((WHILE_HELD, HELD), (RUN_TO_BOUND, LATCHED)):
    _off = (END, IDLE) if _mode == WHILE_HELD else (NOTHING, LATCHED)
    for _cancellable in (True, False):
        _rows = {(IDLE, ON): (START, _state)}  # type: dict[tuple[str, str], Row]
        _rows.update(_IDLE_ROWS)
        _rows.update(_active_rows(_state, _off, (END, IDLE) if _cancellable else (REFUSE, _state),
                                  (REFUSE, _state)))
        TABLE[(_mode, _cancellable)] = _rows
# A backend-started session: only the backend (or its bound) ends it, never the occupant.
TABLE[(REMOTE, False)] = dict(_IDLE_ROWS)
TABLE[(REMOTE, False)][(IDLE, ON)] = (START, REMOTE_ACTIVE)
TABLE[(REMOTE, False)].update(_active_rows(REMOTE_ACTIVE, (NOTHING, REMOTE_ACTIVE), (REFUSE, REMOTE_ACTIVE),
                                           (END, IDLE)))
# Started on untrusted time, its command found outside its window once the time is trusted.
TABLE[(REMOTE, False)][(REMOTE_ACTIVE, WINDOW_FAILED)] = (END, IDLE)


class TransitionError(TcuError):
    """An input arrived in a state that the table has no row for."""


def step(mode: int, cancellable: bool, state: str, event: str) -> "Row":
    """(effect, next state) for one input; raises TransitionError for a pair not in TABLE."""
    row = TABLE[(mode, cancellable)].get((state, event))
    if row is None:
        raise TransitionError("no transition from %s on %s" % (state, event))
    return row
