"""A position fix in integer fixed point, as the core consumes it.

Integers because float32 boards lose precision at 1e-7 degree (as Adafruit's GPS driver
does) and because integers make replay bit-for-bit deterministic. Unknown values are None.
"""

MODE_2D = 2
MODE_3D = 3


class Fix:
    """One epoch's merged fix: UTC time, WGS84 position and optional kinematics."""

    __slots__ = (
        "time_ms", "lat_e7", "lon_e7", "alt_cm", "speed_mms", "course_cdeg",
        "mode", "sats", "hdop_c",
    )

    def __init__(
        self,
        time_ms: int,
        lat_e7: int,
        lon_e7: int,
        mode: int = MODE_2D,
        alt_cm: "int | None" = None,
        speed_mms: "int | None" = None,
        course_cdeg: "int | None" = None,
        sats: "int | None" = None,
        hdop_c: "int | None" = None,
    ) -> None:
        self.time_ms = time_ms  # Unix time, milliseconds, UTC
        self.lat_e7 = lat_e7  # degrees * 1e7, north positive
        self.lon_e7 = lon_e7  # degrees * 1e7, east positive
        self.mode = mode  # MODE_2D or MODE_3D
        self.alt_cm = alt_cm  # altitude above mean sea level, centimetres
        self.speed_mms = speed_mms  # speed over ground, millimetres per second
        self.course_cdeg = course_cdeg  # course over ground, centidegrees 0..35999
        self.sats = sats  # satellites used
        self.hdop_c = hdop_c  # horizontal dilution of precision * 100

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fix):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in Fix.__slots__)

    def __repr__(self) -> str:
        return "Fix(%d, %d, %d, mode=%d)" % (self.time_ms, self.lat_e7, self.lon_e7, self.mode)
