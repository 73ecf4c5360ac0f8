"""The SMS fallback's envelope (protocol/tcu.cddl `sms-envelope`), portable.

An SMS carries no topic, so the envelope says whose uplinks these are: [unit, boot,
[uplink bytes...]]. The uplinks are the very bytes of the MQTT copies (sealed ones too:
the backend opens them with the MQTT topic they would have had).
"""

from ..firmware.errors import ProtocolError
from . import cbor

MAX_SMS_DATA = 140


def encode_envelope(unit: str, boot: int, uplinks: "list[bytes]") -> bytes:
    if not uplinks:
        raise ProtocolError("an SMS envelope carries at least one uplink")
    return cbor.encode([unit, boot, list(uplinks)])


def decode_envelope(data: bytes) -> "tuple[str, int, list[bytes]]":
    items = cbor.decode(data, max_size=MAX_SMS_DATA * 4, max_depth=3)
    if not isinstance(items, list) or len(items) != 3:
        raise cbor.DecodeError("an SMS envelope is [unit, boot, [uplinks]]")
    unit, boot, uplinks = items
    if not isinstance(unit, str) or not 0 < len(unit.encode()) <= 64:
        raise cbor.DecodeError("SMS envelope unit must be text of 1..64 bytes")
    if not isinstance(boot, int) or isinstance(boot, bool) or boot < 0:
        raise cbor.DecodeError("SMS envelope boot must be an unsigned integer")
    if not isinstance(uplinks, list) or not uplinks or not all(isinstance(u, bytes) for u in uplinks):
        raise cbor.DecodeError("SMS envelope uplinks must be a non-empty array of byte strings")
    return unit, boot, uplinks
