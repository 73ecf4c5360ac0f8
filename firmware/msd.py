"""The values an eCall Minimum Set of Data (EN 15722) needs, from a session's own fixes.

Portable and ASN.1-free: the core computes these integers; the host (emulator/msd.py, with
asn1tools) encodes them with the vehicle's data from its configuration. Units are the MSD's:
positions in milliarcseconds, recent positions as deltas in 100 milliarcseconds, direction in
2-degree steps (255: unknown), time in Unix seconds.
"""

from .fix import MODE_3D

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .fix import Fix

DIRECTION_UNKNOWN = 255
DELTA_MIN = -512  # VehicleLocationDelta: INTEGER (-512..511), 100 mas steps
DELTA_MAX = 511
TRUSTED_HDOP_C = 500  # positionCanBeTrusted: a 3D fix with HDOP <= 5.0


def mas_of_e7(value_e7: int) -> int:
    """Degrees * 1e7 -> milliarcseconds (3.6e6 per degree: * 9 / 25), rounded half away from 0."""
    sign = -1 if value_e7 < 0 else 1
    return sign * ((abs(value_e7) * 9 * 2 + 25) // 50)


def can_be_trusted(fix: "Fix") -> bool:
    """EN 15722 asks for 95 % confidence within 150 m; a 3D fix with a known HDOP <= 5 is the
    proxy (about 30 m at a 6 m UERE). A 2D fix, or one with no HDOP, is not trusted."""
    return fix.mode == MODE_3D and fix.hdop_c is not None and fix.hdop_c <= TRUSTED_HDOP_C


def _delta(older: "Fix", newer: "Fix") -> "tuple[int, int]":
    """The older position minus the newer one, in 100 mas, saturated at the MSD's limits."""
    def one(a: int, b: int) -> int:
        d = mas_of_e7(a) - mas_of_e7(b)
        sign = -1 if d < 0 else 1
        steps = sign * ((abs(d) + 50) // 100)
        return max(DELTA_MIN, min(DELTA_MAX, steps))
    return one(older.lat_e7, newer.lat_e7), one(older.lon_e7, newer.lon_e7)


class MsdValues:
    """One MSD's session and fix parts; the vehicle's (VIN, propulsion, type, passengers) are
    the host's configuration."""

    __slots__ = ("message_id", "automatic", "test", "trusted", "timestamp", "lat_mas", "lon_mas",
                 "direction", "n1", "n2")

    def __init__(self, message_id: int, automatic: bool, test: bool, fix: "Fix",
                 earlier: "list[Fix]") -> None:
        """fix: the position sent; earlier: the session's previous sampled fixes, newest first
        (at most two used: recentVehicleLocationN1, N2)."""
        self.message_id = message_id % 256  # INTEGER (0..255)
        self.automatic = automatic
        self.test = test
        self.trusted = can_be_trusted(fix)
        self.timestamp = fix.time_ms // 1000
        self.lat_mas = mas_of_e7(fix.lat_e7)
        self.lon_mas = mas_of_e7(fix.lon_e7)
        course = fix.course_cdeg
        self.direction = DIRECTION_UNKNOWN if course is None else ((course + 100) // 200) % 180
        self.n1 = _delta(earlier[0], fix) if len(earlier) > 0 else None  # type: tuple[int, int] | None
        self.n2 = _delta(earlier[1], earlier[0]) if len(earlier) > 1 else None  # type: tuple[int, int] | None
