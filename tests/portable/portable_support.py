"""Helpers shared by the portable tests: plain Python that runs on CPython and MicroPython.

The portable tests use no pytest or hypothesis API: plain `assert`, and `raises` below.
scripts/micropython_tests.py runs every test_* function of the test_*_portable modules
on MicroPython; pytest collects the same modules on CPython.
"""

from tcu.firmware.events import FixEvent, Publish, Tick
from tcu.firmware.fix import Fix
from tcu.protocol import messages

T0 = 1700000000000  # a boot time, Unix milliseconds
LAT = 481374300
LON = 115754900


def raises(exc_type, fn, *args):
    """Call fn(*args); return the exc_type it raises, fail if it raises nothing.
    Another exception type propagates and fails the test with its own traceback."""
    try:
        fn(*args)
    except exc_type as err:
        return err
    raise AssertionError("%s(...) did not raise %s" % (getattr(fn, "__name__", "function"), exc_type.__name__))


def raises_with(exc_type, text, fn, *args):
    """raises(), and the message contains text."""
    err = raises(exc_type, fn, *args)
    assert text in str(err), "%r does not mention %r" % (str(err), text)
    return err


def fix_at(ms):
    return Fix(ms, LAT, LON, 3, 51900, 13900, 9000, 11, 94)


def feed_fixes(unit, start_ms, seconds):
    """One fix a second, with a Tick first whenever the unit's timer is due."""
    out = []
    for i in range(seconds):
        now = start_ms + i * 1000
        timer = unit.next_timer()
        if timer is not None and timer <= now:
            out += unit.handle(Tick(), now)
        out += unit.handle(FixEvent(fix_at(now)), now)
    return out


def publishes(actions):
    return [messages.decode(a.payload) for a in actions if isinstance(a, Publish)]


def of_type(actions, cls):
    return [a for a in actions if isinstance(a, cls)]


def gnss_unit(**kwargs):
    """A Unit whose wall time is trusted GNSS time equal to its monotonic clock (as when
    both start at the same instant): command validity windows are checked against it."""
    from tcu.firmware.clock import WallTime
    from tcu.firmware.unit import Unit

    unit = Unit(**kwargs)
    unit.clock.update(WallTime(0, messages.TIME_GNSS), 0)
    return unit
