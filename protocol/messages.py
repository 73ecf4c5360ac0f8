"""Uplink messages, protocol version 1: encoder and strict decoder (sans-I/O, portable).

Every message is a CBOR array whose first element, the head, carries version and type:
head = version * 8 + type, one byte on the wire for types 0..7 of versions 1 and 2.
Fields are positional because a located report must fit in 24 bytes; optional extras
travel in a trailing map with small integer keys (EXT_*), present only when non-empty.

  session start  [head, seq, sid, purpose, time, trigger]
  located report [head, seq, sid, purpose, dt, lat, lon]                 position only
                 [head, seq, sid, purpose, dt, lat, lon, speed, course]  with motion
                 [head, seq, sid, purpose, dt, lat, lon, speed, course, ext]
  session end    [head, seq, sid, time, reason]

time: Unix seconds (UTC). dt: seconds since its session's start time, which the session
start message carries (so a report stays small). lat, lon: degrees * 1e7. speed: km/h,
course: 2-degree steps 0..179 (the eCall MSD's resolution), either may be null.
seq: the unit's uplink counter for this boot; (unit, boot, seq) identifies an uplink.
"""

from . import cbor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
SUPPORTED_VERSIONS = (1,)

T_SESSION_START = 1
T_REPORT = 2
T_SESSION_END = 4
TYPE_NAMES = {T_SESSION_START: "session_start", T_REPORT: "report", T_SESSION_END: "session_end"}

EXT_ALT_M = 1  # altitude above mean sea level, whole metres
EXT_SATS = 2  # satellites used
EXT_HDOP_D = 3  # HDOP * 10
EXT_MODE = 4  # 2 = 2D, 3 = 3D
EXT_KEYS = (EXT_ALT_M, EXT_SATS, EXT_HDOP_D, EXT_MODE)

MAX_UPLINK_SIZE = 512
_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1


class Message:
    """One decoded uplink message. Fields that a type does not carry stay None."""

    __slots__ = (
        "version", "type", "seq", "sid", "purpose", "time", "trigger", "dt",
        "lat_e7", "lon_e7", "speed_kmh", "course_2deg", "ext", "reason",
    )

    def __init__(self, type_: int, seq: int, sid: int, version: int = VERSION) -> None:
        self.version = version
        self.type = type_
        self.seq = seq
        self.sid = sid
        self.purpose = None  # type: int | None
        self.time = None  # type: int | None
        self.trigger = None  # type: int | None
        self.dt = None  # type: int | None
        self.lat_e7 = None  # type: int | None
        self.lon_e7 = None  # type: int | None
        self.speed_kmh = None  # type: int | None
        self.course_2deg = None  # type: int | None
        self.ext = {}  # type: dict[int, int]
        self.reason = None  # type: int | None

    @property
    def located(self) -> bool:
        return self.lat_e7 is not None


def _head(type_: int) -> int:
    return VERSION * 8 + type_


def encode_session_start(seq: int, sid: int, purpose: int, time_s: int, trigger: int) -> bytes:
    return cbor.encode([_head(T_SESSION_START), seq, sid, purpose, time_s, trigger])


def encode_session_end(seq: int, sid: int, time_s: int, reason: int) -> bytes:
    return cbor.encode([_head(T_SESSION_END), seq, sid, time_s, reason])


def encode_report(
    seq: int, sid: int, purpose: int, dt: int, lat_e7: int, lon_e7: int,
    speed_kmh: "int | None" = None, course_2deg: "int | None" = None,
    ext: "dict[int, int] | None" = None, motion: bool = True,
) -> bytes:
    """Encode a located report; motion=False leaves speed and course out entirely."""
    fields = [_head(T_REPORT), seq, sid, purpose, dt, lat_e7, lon_e7]  # type: list[Any]
    if motion or ext:
        fields.append(speed_kmh if motion else None)
        fields.append(course_2deg if motion else None)
    if ext:
        fields.append(ext)
    return cbor.encode(fields)


def decode(data: bytes) -> Message:
    """Decode one uplink strictly: anything unknown or out of range raises DecodeError."""
    items = cbor.decode(data, max_size=MAX_UPLINK_SIZE, max_depth=2)
    if not isinstance(items, list) or len(items) < 3:
        raise cbor.DecodeError("uplink is not an array of at least 3 items")
    head = _uint(items, 0, "head")
    version, type_ = head // 8, head % 8
    if version not in SUPPORTED_VERSIONS:
        raise cbor.DecodeError("unsupported protocol version %d" % version)
    msg = Message(type_, _uint(items, 1, "seq"), _uint(items, 2, "sid"), version)
    if type_ == T_SESSION_START:
        _arity(items, 6, 6, "session start")
        msg.purpose = _uint(items, 3, "purpose")
        msg.time = _uint(items, 4, "time")
        msg.trigger = _uint(items, 5, "trigger")
    elif type_ == T_REPORT:
        _decode_report(items, msg)
    elif type_ == T_SESSION_END:
        _arity(items, 5, 5, "session end")
        msg.time = _uint(items, 3, "time")
        msg.reason = _uint(items, 4, "reason")
    else:
        raise cbor.DecodeError("unknown message type %d" % type_)
    return msg


def _decode_report(items: list, msg: Message) -> None:
    _arity(items, 7, 10, "located report")
    if len(items) == 8:
        raise cbor.DecodeError("located report has speed without course")
    msg.purpose = _uint(items, 3, "purpose")
    msg.dt = _int(items, 4, "dt", _INT32_MIN, _INT32_MAX)
    msg.lat_e7 = _int(items, 5, "lat", -900000000, 900000000)
    msg.lon_e7 = _int(items, 6, "lon", -1800000000, 1800000000)
    if len(items) >= 9:
        msg.speed_kmh = _optional(items, 7, "speed", 0, 0xFFFF)
        msg.course_2deg = _optional(items, 8, "course", 0, 179)
    if len(items) == 10:
        ext = items[9]
        if not isinstance(ext, dict) or not ext:
            raise cbor.DecodeError("located report extension is not a non-empty map")
        for key in ext:
            if key not in EXT_KEYS:
                raise cbor.DecodeError("located report has unknown extension key %r" % (key,))
            _int(ext, key, "extension %d" % key, _INT32_MIN, _INT32_MAX)
        msg.ext = ext


def _arity(items: list, low: int, high: int, what: str) -> None:
    if not low <= len(items) <= high:
        raise cbor.DecodeError("%s has %d items, expected %d..%d" % (what, len(items), low, high))


def _int(items: "Any", index: "Any", name: str, low: int, high: int) -> int:
    value = items[index]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise cbor.DecodeError("%s must be an integer in %d..%d, got %r" % (name, low, high, value))
    return value


def _uint(items: list, index: int, name: str) -> int:
    return _int(items, index, name, 0, (1 << 64) - 1)


def _optional(items: list, index: int, name: str, low: int, high: int) -> "int | None":
    return None if items[index] is None else _int(items, index, name, low, high)

