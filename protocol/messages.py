"""Uplink messages, protocol version 1: encoder and strict decoder (sans-I/O, portable).

Every message is a CBOR array whose first element, the head, carries version and type:
head = version * 8 + type, one byte on the wire for types 0..7 of versions 1 and 2.
Fields are positional because a located report must fit in 24 bytes (a crash report, with
altitude and fix quality, in a Teltonika Codec 8 record's 30); rarer extras travel in a trailing
map with small integer keys (EXT_SESSIONS and any later ones), present only when non-empty.

  status         [head, time, state, ?radio]                             never a position
  session start  [head, seq, sid, purpose, time, trigger, ?case, ?{1: msd, 2: true, 3: time-source}]
  located report [head, seq, sid, purpose, dt, lat, lon]                 position only
                 [head, seq, sid, purpose, dt, lat, lon, speed, course]  with motion
                 [head, seq, sid, purpose, dt, lat, lon, speed, course, alt]            + altitude
                 [head, seq, sid, purpose, dt, lat, lon, speed, course, alt, quality]   + fix quality
                 ... any of these, then a trailing map {key: value} of the rarer extras
  located batch  [head, seq, sid, purpose, dt, lat, lon, speed, course, [* dt, lat, lon, speed, course deltas]]
  session end    [head, seq, sid, time, reason, ?time-source]
  command reply  [head, seq, counter, result, detail]

time: Unix seconds (UTC). dt: seconds since its session's start time, which the session
start message carries (so a report stays small). lat, lon: degrees * 1e7. speed: km/h,
course: 2-degree steps 0..179 (the eCall MSD's resolution), either may be null.
alt: metres above mean sea level, or null when only the quality is known. quality: satellites,
HDOP and fix mode in one integer (see pack_quality), 3 bytes for any HDOP under 25.5.
Message.ext presents all of these extras as one map (EXT_ALT_M ... EXT_SESSIONS) either way.
seq: the unit's uplink counter for this boot; (unit, boot, seq) identifies an uplink.
time-source: where a session start's or end's time came from (TIME_*); absent means GNSS,
the usual case, so it costs nothing then. A report's time is its session start's time plus
dt, counted on the unit's monotonic clock: it has its session start's source. A status
says it in its state bits (STATE_TIME_*).
"""

from ..firmware.errors import ProtocolError
from . import cbor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
SUPPORTED_VERSIONS = (1,)

T_STATUS = 0
T_SESSION_START = 1
T_REPORT = 2
T_BATCH = 3
T_SESSION_END = 4
T_COMMAND_RESPONSE = 5
TYPE_NAMES = {
    T_STATUS: "status", T_SESSION_START: "session_start", T_REPORT: "report", T_BATCH: "batch",
    T_SESSION_END: "session_end", T_COMMAND_RESPONSE: "command_response",
}

STATE_ONLINE = 1  # status bits
STATE_INDICATOR = 2  # a location session is active
STATE_GNSS_FIX = 4
STATE_TIME_TRUSTED = 8  # the time is GNSS time or an NTP-synchronised system clock
STATE_TIME_NTP = 16  # ... and it came from the system clock (else GNSS, when trusted)

# Where a time on the wire came from (session start and end: a trailing uint, absent = GNSS).
TIME_GNSS = 0  # the receiver's time: a valid fix with a date (trusted)
TIME_NTP = 1  # the system clock, synchronised by NTP (trusted)
TIME_SYSTEM = 2  # the system clock, not synchronised: it may be hours or years off

# status radio map (the cellular modem, when there is one): never a cell identity
RADIO_REG = 1  # 27.007 registration <stat> of the data path (+CEREG): 1 home, 5 roaming, 2 searching...
RADIO_OPERATOR = 2  # operator name, text
RADIO_RAT = 3  # radio access technology, text ("LTE")
RADIO_SIGNAL_DBM = 4  # signal strength, dBm (+CSQ)
RADIO_KEYS = (RADIO_REG, RADIO_OPERATOR, RADIO_RAT, RADIO_SIGNAL_DBM)
MAX_RADIO_TEXT = 32

RESULT_ACCEPTED = 0
RESULT_REJECTED = 1
RESULT_PROVISIONAL = 2  # accepted, its validity window unchecked: the unit's time is not trusted

EXT_ALT_M = 1  # altitude above mean sea level, whole metres
EXT_SATS = 2  # satellites used
EXT_HDOP_D = 3  # HDOP * 10
EXT_MODE = 4  # 2 = 2D, 3 = 3D
EXT_SESSIONS = 5  # the other sessions this report also serves (overlapping services combine)
EXT_KEYS = (EXT_ALT_M, EXT_SATS, EXT_HDOP_D, EXT_MODE, EXT_SESSIONS)
POSITIONAL_EXT = (EXT_ALT_M, EXT_SATS, EXT_HDOP_D, EXT_MODE)  # on the wire after course, not in the map
WIRE_EXT_KEYS = (EXT_SESSIONS,)  # the trailing map's keys: a new optional field is one more key here
MAX_SATS = 62  # quality: (sats + 1) in 6 bits
MAX_HDOP_D = 0xFFFE  # quality: (HDOP * 10 + 1) in 16 bits
MAX_SESSIONS = 8
MAX_CASE_BYTES = 64  # a session start's case reference, UTF-8 (tcu.cddl: tstr .size (1..64))

START_MSD = 1  # session start extension: an eCall MSD (EN 15722, UPER), repeated for a resend
START_TEST = 2  # session start extension: true for a test call (`tcu trigger crash --test`)
START_TIME_SOURCE = 3  # session start extension: where its time came from (TIME_NTP, TIME_SYSTEM)
MAX_MSD_BYTES = 140

MAX_UPLINK_SIZE = 512
_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1


class Message:
    """One decoded uplink message. Fields that a type does not carry stay None."""

    __slots__ = (
        "version", "type", "seq", "sid", "purpose", "time", "trigger", "dt",
        "lat_e7", "lon_e7", "speed_kmh", "course_2deg", "ext", "reason", "case", "fixes",
        "state", "counter", "result", "msd", "test", "time_source",
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
        self.ext = {}  # type: dict[int, Any]
        self.reason = None  # type: int | None  # session end reason, command rejection reason
        self.case = None  # type: str | None
        self.fixes = []  # type: list[tuple[int, int, int, int, int]]  # batch: (dt, lat, lon, speed, course)
        self.state = None  # type: int | None
        self.counter = None  # type: int | None
        self.result = None  # type: int | None
        self.msd = None  # type: bytes | None  # session start: the eCall MSD it carries
        self.test = False  # session start: a test call, never a real emergency
        self.time_source = None  # type: int | None  # session start and end: TIME_*

    @property
    def located(self) -> bool:
        return self.lat_e7 is not None


def _head(type_: int) -> int:
    return VERSION * 8 + type_


def encode_session_start(seq: int, sid: int, purpose: int, time_s: int, trigger: int,
                         case: "str | None" = None, msd: "bytes | None" = None, test: bool = False,
                         time_source: int = TIME_GNSS) -> bytes:
    """msd: an eCall MSD for this session (a session start resent with the same sid carries a
    newer one); test: a test call; time_source: where time_s came from (absent: GNSS)."""
    fields = [_head(T_SESSION_START), seq, sid, purpose, time_s, trigger]  # type: list[Any]
    if case is not None:
        fields.append(case)
    ext = {}  # type: dict[int, Any]
    if msd is not None:
        ext[START_MSD] = msd
    if test:
        ext[START_TEST] = True
    if time_source != TIME_GNSS:
        ext[START_TIME_SOURCE] = time_source
    if ext:
        fields.append(ext)
    return cbor.encode(fields)


def encode_status(time_s: int, state: int, radio: "dict[int, Any] | None" = None) -> bytes:
    """radio: the RADIO_* map, left out when empty (a unit without a modem)."""
    fields = [_head(T_STATUS), time_s, state]  # type: list[Any]
    if radio:
        fields.append(radio)
    return cbor.encode(fields)


def encode_command_response(seq: int, counter: int, result: int, detail: int) -> bytes:
    """detail: the session started (or 0) when accepted, the R_* reason when rejected."""
    return cbor.encode([_head(T_COMMAND_RESPONSE), seq, counter, result, detail])


def encode_batch(seq: int, sid: int, purpose: int, fixes: "list[tuple[int, int, int, int, int]]") -> bytes:
    """A batch of (dt, lat_e7, lon_e7, speed_kmh, course_2deg) tracking fixes, delta coded.

    After the first fix, each is sent as the difference to the previous one, except the
    position, sent as the residual from a constant-velocity prediction (2*p1 - p0): a car
    mostly keeps its speed and heading, so residuals fit in one or two bytes.
    """
    if not fixes:
        raise ProtocolError("a batch needs at least one fix")
    first = fixes[0]
    deltas = []  # type: list[int]
    for i in range(1, len(fixes)):
        prev, cur = fixes[i - 1], fixes[i]
        base = fixes[i - 2] if i >= 2 else prev
        deltas.append(cur[0] - prev[0])
        deltas.append(cur[1] - (2 * prev[1] - base[1]))
        deltas.append(cur[2] - (2 * prev[2] - base[2]))
        deltas.append(cur[3] - prev[3])
        deltas.append((cur[4] - prev[4] + 90) % 180 - 90)
    return cbor.encode([_head(T_BATCH), seq, sid, purpose] + list(first) + [deltas])


def encode_session_end(seq: int, sid: int, time_s: int, reason: int, time_source: int = TIME_GNSS) -> bytes:
    fields = [_head(T_SESSION_END), seq, sid, time_s, reason]  # type: list[Any]
    if time_source != TIME_GNSS:
        fields.append(time_source)
    return cbor.encode(fields)


def encode_report(
    seq: int, sid: int, purpose: int, dt: int, lat_e7: int, lon_e7: int,
    speed_kmh: "int | None" = None, course_2deg: "int | None" = None,
    ext: "dict[int, Any] | None" = None, motion: bool = True,
) -> bytes:
    """Encode a located report; motion=False leaves speed and course out entirely."""
    fields = [_head(T_REPORT), seq, sid, purpose, dt, lat_e7, lon_e7]  # type: list[Any]
    ext = ext or {}
    rest = {}  # type: dict[int, Any]
    for key in ext:
        if key not in POSITIONAL_EXT:
            rest[key] = ext[key]
    tail = []  # type: list[Any]
    quality = pack_quality(ext.get(EXT_SATS), ext.get(EXT_HDOP_D), ext.get(EXT_MODE))
    if quality:
        tail = [ext.get(EXT_ALT_M), quality]
    elif ext.get(EXT_ALT_M) is not None:
        tail = [ext[EXT_ALT_M]]
    if rest:
        tail.append(rest)
    if motion or tail:
        fields.append(speed_kmh if motion else None)
        fields.append(course_2deg if motion else None)
    return cbor.encode(fields + tail)


def pack_quality(sats: "int | None", hdop_d: "int | None", mode: "int | None") -> int:
    """Satellites, HDOP * 10 and fix mode (2 or 3) in one integer; 0 in a part means unknown:
    (hdop_d + 1) << 8 | (sats + 1) << 2 | mode. A CBOR uint of 3 bytes while HDOP < 25.5,
    where three map entries took 6 to 7."""
    if sats is not None and not 0 <= sats <= MAX_SATS:
        raise ProtocolError("satellites must be 0..%d, got %r" % (MAX_SATS, sats))
    if hdop_d is not None and not 0 <= hdop_d <= MAX_HDOP_D:
        raise ProtocolError("HDOP * 10 must be 0..%d, got %r" % (MAX_HDOP_D, hdop_d))
    if mode is not None and mode not in (2, 3):
        raise ProtocolError("fix mode must be 2 or 3, got %r" % (mode,))
    return ((0 if hdop_d is None else hdop_d + 1) << 8) | ((0 if sats is None else sats + 1) << 2) | (mode or 0)


def unpack_quality(quality: int) -> "dict[int, int]":
    """The EXT_SATS, EXT_HDOP_D and EXT_MODE entries that pack_quality packed (known ones only)."""
    out = {}  # type: dict[int, int]
    mode, sats, hdop = quality & 3, (quality >> 2) & 63, quality >> 8
    if mode == 1:
        raise cbor.DecodeError("fix quality has mode 1 (only 2 and 3 are fixes)")
    if sats:
        out[EXT_SATS] = sats - 1
    if hdop:
        out[EXT_HDOP_D] = hdop - 1
    if mode:
        out[EXT_MODE] = mode
    return out


def decode(data: bytes) -> Message:
    """Decode one uplink strictly: anything unknown or out of range raises DecodeError."""
    items = cbor.decode(data, max_size=MAX_UPLINK_SIZE, max_depth=3)
    if not isinstance(items, list) or len(items) < 3:
        raise cbor.DecodeError("uplink is not an array of at least 3 items")
    head = _uint(items, 0, "head")
    version, type_ = head // 8, head % 8
    if version not in SUPPORTED_VERSIONS:
        raise cbor.DecodeError("unsupported protocol version %d" % version)
    decoder = _DECODERS.get(type_)
    if decoder is None:
        raise cbor.DecodeError("unknown message type %d" % type_)
    return decoder(items, version)


def _decode_status(items: "list[Any]", version: int) -> Message:
    _arity(items, 3, 4, "status")
    msg = Message(T_STATUS, 0, 0, version)
    msg.time = _uint(items, 1, "time")
    msg.state = _int(items, 2, "state", 0, 0xFF)
    if len(items) == 4:  # the radio map, in ext
        radio = items[3]
        if not isinstance(radio, dict) or not radio:
            raise cbor.DecodeError("status radio is not a non-empty map")
        for key in radio:
            if key == RADIO_REG:
                _int(radio, key, "registration", 0, 10)
            elif key == RADIO_SIGNAL_DBM:
                _int(radio, key, "signal", -150, 0)
            elif key in (RADIO_OPERATOR, RADIO_RAT):
                if not isinstance(radio[key], str) or not 0 < len(radio[key].encode()) <= MAX_RADIO_TEXT:
                    raise cbor.DecodeError("status radio text must be 1..%d bytes" % MAX_RADIO_TEXT)
            else:
                raise cbor.DecodeError("status has unknown radio key %r" % (key,))
        msg.ext = radio
    return msg


def _decode_start(items: "list[Any]", version: int) -> Message:
    _arity(items, 6, 8, "session start")
    msg = Message(T_SESSION_START, _uint(items, 1, "seq"), _uint(items, 2, "sid"), version)
    msg.purpose = _uint(items, 3, "purpose")
    msg.time = _uint(items, 4, "time")
    msg.trigger = _uint(items, 5, "trigger")
    msg.time_source = TIME_GNSS
    rest = items[6:]
    if rest and isinstance(rest[-1], dict):
        _start_ext(rest.pop(), msg)
    if len(rest) > 1:
        raise cbor.DecodeError("session start has %d items, expected a case and an extension map" % len(items))
    if rest:
        if not isinstance(rest[0], str) or not 0 < len(rest[0].encode()) <= MAX_CASE_BYTES:
            raise cbor.DecodeError("case reference must be text of 1..%d bytes" % MAX_CASE_BYTES)
        msg.case = rest[0]
    return msg


def _start_ext(ext: "dict[Any, Any]", msg: Message) -> None:
    if not ext:
        raise cbor.DecodeError("session start extension is an empty map")
    for key in ext:
        value = ext[key]
        if key == START_MSD and isinstance(value, bytes) and 0 < len(value) <= MAX_MSD_BYTES:
            msg.msd = value
        elif key == START_TEST and value is True:
            msg.test = True
        elif key == START_TIME_SOURCE and value in (TIME_NTP, TIME_SYSTEM) and not isinstance(value, bool):
            msg.time_source = value
        else:
            raise cbor.DecodeError("session start extension %r: expected 1 => MSD bytes (1..%d), 2 => true, "
                                   "3 => time source 1..2" % (key, MAX_MSD_BYTES))


def _time_source(items: "list[Any]", index: int) -> int:
    """The optional trailing time source at index (absent: GNSS); nothing may follow it."""
    if len(items) <= index:
        return TIME_GNSS
    if len(items) > index + 1:
        raise cbor.DecodeError("unexpected item after the time source")
    return _int(items, index, "time source", TIME_NTP, TIME_SYSTEM)


def _decode_end(items: "list[Any]", version: int) -> Message:
    _arity(items, 5, 6, "session end")
    msg = Message(T_SESSION_END, _uint(items, 1, "seq"), _uint(items, 2, "sid"), version)
    msg.time = _uint(items, 3, "time")
    msg.reason = _uint(items, 4, "reason")
    msg.time_source = _time_source(items, 5)
    return msg


def _decode_response(items: "list[Any]", version: int) -> Message:
    _arity(items, 5, 5, "command response")
    msg = Message(T_COMMAND_RESPONSE, _uint(items, 1, "seq"), 0, version)
    msg.counter = _uint(items, 2, "counter")
    msg.result = _int(items, 3, "result", RESULT_ACCEPTED, RESULT_PROVISIONAL)
    if msg.result != RESULT_REJECTED:
        msg.sid = _uint(items, 4, "session")
    else:
        msg.reason = _uint(items, 4, "reason")
    return msg


def _decode_report(items: "list[Any]", version: int) -> Message:
    _arity(items, 7, 12, "located report")
    if len(items) == 8:
        raise cbor.DecodeError("located report has speed without course")
    msg = _located_head(items, T_REPORT, version)
    if len(items) >= 9:
        msg.speed_kmh = _optional(items, 7, "speed", 0, 0xFFFF)
        msg.course_2deg = _optional(items, 8, "course", 0, 179)
    tail = items[9:]
    ext = {}  # type: dict[int, Any]
    if tail and isinstance(tail[-1], dict):
        ext = _decode_ext(tail.pop())
    if len(tail) > 2:
        raise cbor.DecodeError("located report has %d items after course, expected altitude and quality" % len(tail))
    if len(tail) == 1 and tail[0] is None:
        raise cbor.DecodeError("located report has a null altitude and no quality")
    if tail and tail[0] is not None:
        ext[EXT_ALT_M] = _int(tail, 0, "altitude", _INT32_MIN, _INT32_MAX)
    if len(tail) == 2:
        ext.update(unpack_quality(_int(tail, 1, "fix quality", 1, ((MAX_HDOP_D + 1) << 8) | 255)))
    msg.ext = ext
    return msg


def _decode_ext(ext: "dict[Any, Any]") -> "dict[int, Any]":
    if not ext:
        raise cbor.DecodeError("located report extension is not a non-empty map")
    for key in ext:
        if key not in WIRE_EXT_KEYS:
            raise cbor.DecodeError("located report has unknown extension key %r" % (key,))
        if key == EXT_SESSIONS:
            sids = ext[key]
            if not isinstance(sids, list) or not 0 < len(sids) <= MAX_SESSIONS:
                raise cbor.DecodeError("a report's other sessions must be a list of 1..%d" % MAX_SESSIONS)
            for i in range(len(sids)):
                _uint(sids, i, "session")
    return ext


def _located_head(items: "list[Any]", type_: int, version: int) -> Message:
    msg = Message(type_, _uint(items, 1, "seq"), _uint(items, 2, "sid"), version)
    msg.purpose = _uint(items, 3, "purpose")
    msg.dt = _int(items, 4, "dt", _INT32_MIN, _INT32_MAX)
    msg.lat_e7 = _int(items, 5, "lat", -900000000, 900000000)
    msg.lon_e7 = _int(items, 6, "lon", -1800000000, 1800000000)
    return msg


def _decode_batch(items: "list[Any]", version: int) -> Message:
    _arity(items, 10, 10, "located batch")
    msg = _located_head(items, T_BATCH, version)
    msg.speed_kmh = _int(items, 7, "speed", 0, 0xFFFF)
    msg.course_2deg = _int(items, 8, "course", 0, 179)
    deltas = items[9]
    if not isinstance(deltas, list) or len(deltas) % 5:
        raise cbor.DecodeError("batch deltas must be an array of 5 integers per fix")
    cur = (msg.dt, msg.lat_e7, msg.lon_e7, msg.speed_kmh, msg.course_2deg)  # type: Any
    fixes = [cur]
    for i in range(0, len(deltas), 5):
        d = [_int(deltas, i + k, "delta", _INT32_MIN, _INT32_MAX) for k in range(5)]
        base = fixes[-2] if len(fixes) >= 2 else cur
        cur = (cur[0] + d[0], 2 * cur[1] - base[1] + d[1], 2 * cur[2] - base[2] + d[2],
               cur[3] + d[3], (cur[4] + d[4]) % 180)
        if not (-900000000 <= cur[1] <= 900000000 and -1800000000 <= cur[2] <= 1800000000 and cur[3] >= 0):
            raise cbor.DecodeError("batch fix %d is out of range" % len(fixes))
        fixes.append(cur)
    msg.fixes = fixes
    return msg


_DECODERS = {
    T_STATUS: _decode_status, T_SESSION_START: _decode_start, T_REPORT: _decode_report,
    T_BATCH: _decode_batch, T_SESSION_END: _decode_end, T_COMMAND_RESPONSE: _decode_response,
}


def _arity(items: "list[Any]", low: int, high: int, what: str) -> None:
    if not low <= len(items) <= high:
        raise cbor.DecodeError("%s has %d items, expected %d..%d" % (what, len(items), low, high))


def _int(items: "Any", index: "Any", name: str, low: int, high: int) -> int:
    value = items[index]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise cbor.DecodeError("%s must be an integer in %d..%d, got %r" % (name, low, high, value))
    return value


def _uint(items: "list[Any]", index: int, name: str) -> int:
    return _int(items, index, name, 0, (1 << 64) - 1)


def _optional(items: "list[Any]", index: int, name: str, low: int, high: int) -> "int | None":
    return None if items[index] is None else _int(items, index, name, low, high)

