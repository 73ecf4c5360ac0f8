"""What an MQTT broker announces and answers, as the unit's link plans by it: the CONNACK's
limits (MQTT 5: Receive Maximum, Maximum Packet Size, Maximum QoS, Retain Available, Server
Keep Alive, Assigned Client Identifier, Topic Alias Maximum), reason codes by name, and the
size of a PUBLISH before it is sent.

paho (2.2) adopts Server Keep Alive itself but neither Receive Maximum nor Maximum Packet Size
(read in its client.py: `_max_inflight_messages` is only the client's own setting, and
`publish()` checks a payload only against MQTT's 256 MB), so the link keeps both itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

MQTT311, MQTT5 = 4, 5
UNLIMITED_PACKET = 268_435_460  # MQTT's own ceiling (a 4-byte remaining length, plus the header)
CONNACK_311 = {1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
               4: "bad user name or password", 5: "not authorized"}
PACKETS = {"CONNACK": PacketTypes.CONNACK, "PUBACK": PacketTypes.PUBACK, "DISCONNECT": PacketTypes.DISCONNECT}
PUBACK_CODES = frozenset((0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99))  # MQTT 5, 3.4.2.1
RETAIN_NOT_SUPPORTED = 0x9A
PACKET_TOO_LARGE = 0x95
QOS_NOT_SUPPORTED = 0x9B
# A PUBACK refusal that the same uplink will get again from this broker however often it is sent.
PERMANENT_PUBACK = {0x87: "not authorized", 0x90: "topic name", 0x95: "packet size", 0x97: "quota", 0x99: "payload"}


def reason_text(packet: str, code: int, version: int = MQTT5) -> str:
    """'0x87 Not authorized' (MQTT 5), '5 not authorized' (a 3.1.1 CONNACK)."""
    if version != MQTT5:
        return "%d %s" % (code, CONNACK_311.get(code, "refused")) if packet == "CONNACK" else "%d" % code
    for kind in (packet, "DISCONNECT"):  # a code the specification does not give this packet: its meaning
        try:
            name = ReasonCode(PACKETS[kind], identifier=code).getName()
        except (KeyError, ValueError):
            continue
        return "0x%02X %s" % (code, name) if kind == packet else "0x%02X %s (not a %s code)" % (code, name, packet)
    return "0x%02X unknown reason code" % code


def reason_of(reason: object) -> int:
    """A paho ReasonCode (or int) as its number."""
    value = getattr(reason, "value", reason)
    return value if isinstance(value, int) else -1


@dataclass
class Limits:
    """A broker's limits for this connection; MQTT 3.1.1 announces none (the defaults)."""

    receive_max: int = 65535
    max_packet_size: int = UNLIMITED_PACKET
    max_qos: int = 2
    retain_available: bool = True
    server_keepalive: int | None = None
    assigned_client_id: str | None = None
    topic_alias_max: int = 0  # the unit uses no topic aliases (its topics are ~25 bytes)

    @classmethod
    def from_connack(cls, props: object) -> Limits:
        def get(name: str, default: int) -> int:
            return int(getattr(props, name, default))

        return cls(get("ReceiveMaximum", 65535), get("MaximumPacketSize", UNLIMITED_PACKET), get("MaximumQoS", 2),
                   bool(get("RetainAvailable", 1)), getattr(props, "ServerKeepAlive", None),
                   getattr(props, "AssignedClientIdentifier", None), get("TopicAliasMaximum", 0))

    def describe(self) -> str:
        parts = ["Receive Maximum %d" % self.receive_max]
        if self.max_packet_size < UNLIMITED_PACKET:
            parts.append("Maximum Packet Size %d" % self.max_packet_size)
        if self.max_qos < 2:
            parts.append("Maximum QoS %d" % self.max_qos)
        if not self.retain_available:
            parts.append("no retain")
        if self.server_keepalive is not None:
            parts.append("Server Keep Alive %d s" % self.server_keepalive)
        return ", ".join(parts)


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def publish_size(version: int, topic: bytes, payload_len: int) -> int:
    """The bytes of a QoS 1 PUBLISH as paho encodes it (MQTT 5: an empty property list)."""
    remaining = 2 + len(topic) + 2 + (1 if version == MQTT5 else 0) + payload_len
    return 1 + _varint_len(remaining) + remaining
