"""Downlink commands: the payload inside a COSE_Sign1 / COSE_Mac0, and its verification.

  command = [head, unit, counter, not_before, not_after, code, args]

head is version * 8 + 7 (a downlink command). unit binds it to one unit; the COSE external
AAD binds it to that unit's downlink topic as well. counter strictly increases per backend
key: the unit persists the last one it accepted, so a command cannot be replayed, not even
after a restart. not_before/not_after (Unix seconds) bound when it may be executed.
Portable: runs on MicroPython (HMAC keys; EdDSA where a verify function is supplied).
"""

from ..firmware.errors import ProtocolError
from . import cbor, cose, messages

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

VERSION = 1
T_COMMAND = 7
MAX_COMMAND_SIZE = 512

CMD_TRACK_STOLEN = 1  # start stolen-vehicle tracking; args: case, until
CMD_LAWFUL_REQUEST = 2  # start tracking under a lawful request; args: case, until
CMD_CANCEL = 3  # end a backend-started session; args: session
CMD_LOCATE_NOW = 4  # sample the next fix now in an active session; args: session
CMD_CONFIGURE = 5  # args: status_interval
CMD_SEND_MSD = 6  # resend a crash or SOS session's eCall MSD (as a PSAP may ask); args: session
COMMAND_NAMES = {
    CMD_TRACK_STOLEN: "track_stolen", CMD_LAWFUL_REQUEST: "lawful_request", CMD_CANCEL: "cancel",
    CMD_LOCATE_NOW: "locate_now", CMD_CONFIGURE: "configure", CMD_SEND_MSD: "send_msd",
}

ARG_CASE = 1  # text: the case reference (police report, court order)
ARG_UNTIL = 2  # uint: Unix seconds when tracking ends
ARG_SESSION = 3  # uint: session id
ARG_STATUS_INTERVAL = 4  # uint: seconds between status heartbeats
MAX_STATUS_INTERVAL_S = 86400
_ARG_TYPES = {ARG_CASE: str, ARG_UNTIL: int, ARG_SESSION: int, ARG_STATUS_INTERVAL: int}
_REQUIRED = {
    CMD_TRACK_STOLEN: (ARG_CASE, ARG_UNTIL), CMD_LAWFUL_REQUEST: (ARG_CASE, ARG_UNTIL),
    CMD_CANCEL: (ARG_SESSION,), CMD_LOCATE_NOW: (ARG_SESSION,), CMD_CONFIGURE: (ARG_STATUS_INTERVAL,),
    CMD_SEND_MSD: (ARG_SESSION,),
}

# Why a command was refused: the wire codes of a command response.
R_MALFORMED = 1
R_UNAUTHENTIC = 2  # unknown key, bad signature or MAC
R_ALGORITHM = 3  # the message names another algorithm than its key's
R_WRONG_UNIT = 4
R_NOT_YET_VALID = 5
R_EXPIRED = 6
R_REPLAYED = 7
R_POLICY = 8  # authentic, but the unit will not do it (no such session, not cancellable)
REASON_NAMES = {
    R_MALFORMED: "malformed", R_UNAUTHENTIC: "unauthentic", R_ALGORITHM: "algorithm",
    R_WRONG_UNIT: "wrong_unit", R_NOT_YET_VALID: "not_yet_valid", R_EXPIRED: "expired",
    R_REPLAYED: "replayed", R_POLICY: "policy",
}


class CommandRejected(ProtocolError):
    """A downlink command that the unit refuses; nothing changed. reason: R_* code."""

    def __init__(self, reason: int, message: str, counter: int = 0) -> None:
        super().__init__(message)  # ProtocolError.__init__ does not exist on MicroPython
        self.reason = reason
        self.counter = counter


class Command:
    __slots__ = ("unit", "counter", "not_before", "not_after", "code", "args")

    def __init__(self, unit: str, counter: int, not_before: int, not_after: int, code: int,
                 args: "dict[int, Any]") -> None:
        self.unit = unit
        self.counter = counter
        self.not_before = not_before
        self.not_after = not_after
        self.code = code
        self.args = args


def downlink_topic(unit: str) -> str:
    return "tcu/v1/%s/down" % unit


def encode_command(command: Command) -> bytes:
    return cbor.encode([VERSION * 8 + T_COMMAND, command.unit, command.counter, command.not_before,
                        command.not_after, command.code, command.args])


def decode_command(payload: bytes) -> Command:
    try:
        items = cbor.decode(payload, max_size=MAX_COMMAND_SIZE, max_depth=2)
    except ProtocolError as err:
        raise CommandRejected(R_MALFORMED, "command payload: %s" % err) from None
    if not isinstance(items, list) or len(items) != 7 or items[0] != VERSION * 8 + T_COMMAND:
        raise CommandRejected(R_MALFORMED, "not a version %d command" % VERSION)
    _, unit, counter, not_before, not_after, code, args = items
    if not isinstance(unit, str) or not isinstance(args, dict):
        raise CommandRejected(R_MALFORMED, "command unit or args have the wrong type")
    for value in (counter, not_before, not_after, code):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CommandRejected(R_MALFORMED, "command numbers must be unsigned integers")
    if code not in _REQUIRED:
        raise CommandRejected(R_MALFORMED, "unknown command %d" % code, counter)
    for key in args:
        if key not in _ARG_TYPES or not isinstance(args[key], _ARG_TYPES[key]) or isinstance(args[key], bool):
            raise CommandRejected(R_MALFORMED, "command argument %r is unknown or mistyped" % (key,), counter)
    for key in _REQUIRED[code]:
        if key not in args:
            raise CommandRejected(R_MALFORMED, "%s needs argument %d" % (COMMAND_NAMES[code], key), counter)
    # Refused here, not after the session started: its start message must carry the case.
    if ARG_CASE in args and not 0 < len(args[ARG_CASE].encode()) <= messages.MAX_CASE_BYTES:
        raise CommandRejected(R_MALFORMED, "the case reference must be 1..%d bytes" % messages.MAX_CASE_BYTES,
                              counter)
    if args.get(ARG_STATUS_INTERVAL, 0) > MAX_STATUS_INTERVAL_S:
        raise CommandRejected(R_MALFORMED, "status interval above %d s" % MAX_STATUS_INTERVAL_S, counter)
    return Command(unit, counter, not_before, not_after, code, args)


class BackendKey:
    """A backend key the unit trusts: its id, its fixed algorithm and the key material
    (32 HMAC bytes, or an Ed25519 public key object for verify_signature)."""

    __slots__ = ("kid", "alg", "key")

    def __init__(self, kid: bytes, alg: int, key: "Any") -> None:
        self.kid = kid
        self.alg = alg
        self.key = key


class CommandVerifier:
    """Verifies downlink commands for one unit."""

    __slots__ = ("unit", "keys", "verify_signature")

    def __init__(self, unit: str, keys: "list[BackendKey]",
                 verify_signature: "Callable[[Any, bytes, bytes], bool] | None" = None) -> None:
        self.unit = unit
        self.keys = {}  # type: dict[bytes, BackendKey]
        for key in keys:
            self.keys[key.kid] = key
        self.verify_signature = verify_signature

    def verify(self, data: bytes, now_s: "int | None", last_counter: int) -> Command:
        """The authentic, fresh command for this unit in data; CommandRejected otherwise.
        now_s None: the unit's time is not trusted, so the validity window is left to the
        caller's rule (firmware/unit.py); authenticity, unit and counter are checked always."""
        try:
            envelope = cose.parse(data)
        except ProtocolError as err:
            raise CommandRejected(R_MALFORMED, "downlink: %s" % err) from None
        key = self.keys.get(envelope.kid)
        if key is None:
            raise CommandRejected(R_UNAUTHENTIC, "downlink signed with an unknown key")
        if envelope.alg != key.alg:
            raise CommandRejected(R_ALGORITHM, "downlink claims algorithm %d, its key uses %d"
                                  % (envelope.alg, key.alg))
        aad = downlink_topic(self.unit).encode()
        try:
            payload = cose.verify(envelope, aad, key.alg, key.key, self.verify_signature)
        except ProtocolError as err:
            raise CommandRejected(R_UNAUTHENTIC, "downlink: %s" % err) from None
        command = decode_command(payload)
        if command.unit != self.unit:
            raise CommandRejected(R_WRONG_UNIT, "command is for unit %r" % command.unit, command.counter)
        if now_s is not None and now_s < command.not_before:
            raise CommandRejected(R_NOT_YET_VALID, "command is valid from %d" % command.not_before, command.counter)
        if now_s is not None and now_s > command.not_after:
            raise CommandRejected(R_EXPIRED, "command expired at %d" % command.not_after, command.counter)
        if command.counter <= last_counter:
            raise CommandRejected(R_REPLAYED, "command counter %d is not above %d" % (command.counter, last_counter),
                                  command.counter)
        return command


def seal_command(command: Command, kid: bytes, alg: int, key: "Any",
                 sign: "Callable[[bytes], bytes] | None" = None) -> bytes:
    """The backend side: a COSE_Mac0 (HMAC key) or COSE_Sign1 (sign callable) command."""
    payload = encode_command(command)
    aad = downlink_topic(command.unit).encode()
    if alg == cose.ALG_HMAC_256_256:
        return cose.mac0(payload, kid, aad, key)
    if sign is None:
        raise ProtocolError("sealing with algorithm %d needs a sign function" % alg)
    return cose.sign1(payload, alg, kid, aad, sign)
