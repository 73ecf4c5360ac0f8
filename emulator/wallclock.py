"""The live unit's clocks: a monotonic clock for the firmware, and wall-time readings.

Wall time is GNSS time while the receiver has a valid fix with a date (rollover-corrected,
hal/gnss_time.py), else the system clock, trusted only when NTP has synchronised it. Both
clocks and the NTP probe are injectable: tests step the wall clock, never the machine's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

from tcu.firmware.clock import WallTime
from tcu.hal.gnss_time import RolloverCorrector
from tcu.protocol.messages import TIME_GNSS, TIME_NTP, TIME_SYSTEM

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_STA_UNSYNC = 0x0040
_STATUS_OFFSET = 40  # struct timex on 64-bit Linux: int modes (+pad), 4 longs, then int status
GNSS_FRESH_S = 3.0  # a fix older than this no longer makes the wall time GNSS time


_LIBC: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    """libc, loaded once: find_library runs ldconfig, far too slow for every status message
    of a fleet's thousands of units."""
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True))
    return _LIBC[0]


def ntp_synchronised() -> bool:
    """Whether the kernel says an NTP daemon keeps the system clock synchronised: adjtimex(2)
    in read-only mode, as systemd's timedatectl (NTPSynchronized) and chrony's tools read it.
    False where it cannot be asked (not Linux)."""
    try:
        buf = ctypes.create_string_buffer(512)  # larger than struct timex; modes = 0: read only
        state = _libc().adjtimex(buf)
    except (OSError, AttributeError):
        return False
    status = int.from_bytes(buf.raw[_STATUS_OFFSET:_STATUS_OFFSET + 4], "little", signed=True)
    return state not in (-1, _TIME_ERROR) and not status & _STA_UNSYNC


class Clocks:
    """monotonic_ms() for the firmware; wall(...) readings, from GNSS or the system clock."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, system: Callable[[], float] = time.time,
                 ntp: Callable[[], bool] = ntp_synchronised) -> None:
        self.monotonic, self.system, self.ntp = monotonic, system, ntp
        self.rollover = RolloverCorrector()
        self._gnss: tuple[int, float] | None = None  # the last GNSS time (ms) and when it came (monotonic)

    def monotonic_ms(self) -> int:
        return int(self.monotonic() * 1000)

    def heard_gnss(self, time_ms: int) -> WallTime:
        """The receiver's time with a valid fix and date (a fix, or a dormant heartbeat)."""
        corrected = self.rollover.correct(time_ms)
        self._gnss = (corrected, self.monotonic())
        return WallTime(corrected, TIME_GNSS)

    def reading(self) -> WallTime:
        """The wall time now: GNSS time carried forward on the monotonic clock while the last
        fix is fresh, else the system clock (NTP-synchronised or not)."""
        now = self.monotonic()
        if self._gnss is not None and now - self._gnss[1] < GNSS_FRESH_S:
            return WallTime(self._gnss[0] + int((now - self._gnss[1]) * 1000), TIME_GNSS)
        return WallTime(int(self.system() * 1000), TIME_NTP if self.ntp() else TIME_SYSTEM)
