"""MQTT plumbing shared by the unit's link and the reference backend: broker URLs
(mqtt:// and mqtts:// with TLS options), topics, and a handshake that waits for CONNACK
with a deadline, speaking MQTT 5 and falling back to 3.1.1 for brokers that refuse it.

Topics (protocol version 1):
  tcu/v1/UNIT/up/BOOT   every uplink, QoS 1, never retained; BOOT is the unit's boot number
  tcu/v1/UNIT/status    a CBOR status message, online / offline (the last will), QoS 1, retained;
                        never a position
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tcu.emulator.connect_errors import connect_failed, no_connack
from tcu.emulator.credentials import Credentials, credentials
from tcu.emulator.mqtt_limits import reason_of, reason_text
from tcu.firmware.errors import LinkError, UsageError
from tcu.protocol import messages

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
TOPIC_ROOT = "tcu/v1"
ALL_UPLINKS = TOPIC_ROOT + "/+/up/#"  # '#' also matches the parent: tcu/v1/UNIT/up
SESSION_EXPIRY_S = 86_400  # MQTT 5: keep the broker session a day across reconnects
UNSUPPORTED_PROTOCOL = (1, 0x84)  # CONNACK codes of 3.1.1 and 5 for "speak another version"
PROBE_S = 2.0  # how long an MQTT 5 CONNECT that may fall back to 3.1.1 waits for CONNACK
MAX_BOOT = (1 << 32) - 1  # boot numbers are u32 (the outbox journal's)


def status_payload(online: bool, radio: dict[int, Any] | None = None) -> bytes:
    """The unit's status message (protocol/tcu.cddl `status`): the time and state bits, never a
    position; radio, the modem's registration, operator, RAT and signal. The offline one is the
    last will, so its time is when the unit connected."""
    return messages.encode_status(int(time.time()), messages.STATE_ONLINE if online else 0, radio)


def uplink_topic(unit_id: str, boot: int | None = None) -> str:
    base = "%s/%s/up" % (TOPIC_ROOT, unit_id)
    return base if boot is None else "%s/%d" % (base, boot)


def status_topic(unit_id: str) -> str:
    return "%s/%s/status" % (TOPIC_ROOT, unit_id)


def parse_uplink_topic(topic: str) -> tuple[str, int | None]:
    """'tcu/v1/UNIT/up/BOOT' -> (UNIT, BOOT); 'tcu/v1/UNIT/up' -> (UNIT, None); else ('', None)."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[3] != "up":
        return "", None
    if len(parts) == 5:
        # isdigit() alone takes '²', which int() refuses: a topic from the network must not raise
        boot = int(parts[4]) if parts[4].isascii() and parts[4].isdigit() else -1
        return (parts[2], boot) if 0 <= boot <= MAX_BOOT else ("", None)
    return parts[2], None


@dataclass(frozen=True)
class TlsOptions:
    """For mqtts:// URLs: the CA to trust (None: the system's) and, for mutual TLS, the
    client's certificate and key."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class Broker:
    url: str  # without user information: safe to show
    host: str
    port: int
    tls: bool
    auth: Credentials | None = field(default=None, repr=False)  # from the URL (percent-decoded)


def redact_url(url: str) -> str:
    """url without USER:PASSWORD@ (for messages about a URL that did not parse)."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return scheme + sep + netloc.rpartition("@")[2] + slash + path if sep else url.rpartition("@")[2]


def parse_broker_url(url: str, auth: Credentials | None = None) -> Broker:
    """mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://... (TLS, default port 8883). auth (the
    config's or the options') takes the place of the URL's user information."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, say
        parts = urlsplit("")
    shown = redact_url(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise UsageError("--broker %r: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], "
                         "e.g. mqtt://127.0.0.1:1883" % shown)
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise UsageError("--broker %r: the port is not a number from 1 to 65535" % shown) from None
    if auth is None and parts.username is not None:
        auth = credentials(unquote(parts.username), None if parts.password is None else unquote(parts.password))
    return Broker(shown, parts.hostname, port, parts.scheme == "mqtts", auth)


def new_client(broker: Broker, client_id: str, protocol: mqtt.MQTTProtocolVersion, tls: TlsOptions | None,
               persistent: bool) -> mqtt.Client:
    """A paho client (not connected). persistent: keep the broker session across connects."""
    if protocol == mqtt.MQTTv5:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    else:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                             clean_session=not persistent)
    if broker.tls:
        tls = tls or TlsOptions()
        try:
            client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
        except (OSError, ValueError) as err:
            raise UsageError("TLS options for %s: %s" % (broker.url, err)) from None
    if broker.auth is not None:
        # bytes: MQTT's password is binary data; paho passes bytes through (typed str only)
        client.username_pw_set(broker.auth.username, broker.auth.password)  # type: ignore[arg-type]
    return client


def connect_args(protocol: mqtt.MQTTProtocolVersion, persistent: bool) -> dict[str, object]:
    """Keyword arguments for paho's connect(): MQTT 5 wipes the session on the first connect
    unless told otherwise, so a persistent client asks for clean_start=False and an expiry."""
    if protocol != mqtt.MQTTv5:
        return {}
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S if persistent else 0
    return {"clean_start": not persistent, "properties": props}


reason_value = reason_of


def is_failure(reason: object) -> bool:
    """A CONNACK or PUBACK reason that is not success (MQTT 5: >= 0x80)."""
    return bool(getattr(reason, "is_failure", False)) or reason_value(reason) >= 0x80


def connack_text(reason: object, version: int) -> str:
    """A CONNACK reason as number and name: '0x86 Bad User Name or Password'."""
    return reason_text("CONNACK", reason_value(reason), 5 if version == mqtt.MQTTv5 else 4)


def protocols(protocol: mqtt.MQTTProtocolVersion | None) -> list[mqtt.MQTTProtocolVersion]:
    """The versions to try, in order: None means MQTT 5, then 3.1.1."""
    return [protocol] if protocol is not None else [mqtt.MQTTv5, mqtt.MQTTv311]


def answer_wait(protocol: int, candidates: Sequence[int], timeout_s: float) -> float:
    """How long to wait for CONNACK: a 3.1.1-only broker may hang on MQTT 5 properties
    (amqtt does) instead of refusing, so an MQTT 5 attempt that may fall back waits less.
    protocol: paho's MQTTv5 / MQTTv311 or mqtt_limits' MQTT5 / MQTT311 (the same numbers)."""
    return min(timeout_s, PROBE_S) if protocol == mqtt.MQTTv5 and len(candidates) > 1 else timeout_s


def open_client(url: str, client_id: str, timeout_s: float = 5.0,
                setup: Callable[[mqtt.Client], None] | None = None, tls: TlsOptions | None = None,
                persistent: bool = False, keepalive_s: int = 30,
                protocol: mqtt.MQTTProtocolVersion | None = None, auth: Credentials | None = None) -> mqtt.Client:
    """A paho client connected to url with paho's network loop running, or LinkError.

    paho's connect() only opens the socket; a broker that accepts TCP but never sends
    CONNACK (or refuses the client, also at TLS) is caught by waiting for on_connect with a
    deadline. protocol None: MQTT 5, and 3.1.1 for a broker that refuses or ignores it.
    paho reconnects on its own afterwards (within 1 to 2 s); setup() should subscribe in
    on_connect so a broker that lost its sessions still delivers.
    """
    broker = parse_broker_url(url, auth)
    url = broker.url  # from here on, without user information
    candidates = protocols(protocol)
    for version in candidates:
        client = new_client(broker, client_id, version, tls, persistent)
        client.connect_timeout = timeout_s + 1  # paho's own CONNACK deadline after ours: silence is not a close
        client.reconnect_delay_set(1, 2)
        answered = threading.Event()
        answer: list[object] = []
        user_on_connect: list[Callable[..., None]] = []

        def on_connect(c: mqtt.Client, userdata: object, flags: object, reason: object,
                       props: object = None, answer: list[object] = answer,
                       answered: threading.Event = answered, user: list[Callable[..., None]] = user_on_connect
                       ) -> None:
            answer.append(reason)
            if not is_failure(reason) and user:
                user[0](c, userdata, flags, reason, props)
            answered.set()

        def on_disconnect(*args: object, answered: threading.Event = answered) -> None:
            answered.set()  # closed before (or after) CONNACK: either way, stop waiting

        if setup is not None:
            setup(client)
        if client.on_connect is not None:
            user_on_connect.append(client.on_connect)
        client.on_connect = on_connect
        if client.on_disconnect is None:
            client.on_disconnect = on_disconnect
        try:
            client.connect(broker.host, broker.port, keepalive=keepalive_s,
                           **connect_args(version, persistent))  # type: ignore[arg-type]
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            raise connect_failed(url, broker.host, broker.port, broker.tls, err) from None
        client.loop_start()
        closed = answered.wait(answer_wait(version, candidates, timeout_s)) and not answer
        if answer and not is_failure(answer[0]) and client.is_connected():
            return client
        client.disconnect()
        client.loop_stop()
        if version != candidates[-1] and (not answer or reason_value(answer[0]) in UNSUPPORTED_PROTOCOL):
            # no answer, closed before CONNACK (amqtt closes on MQTT 5), or "speak another version"
            continue
        if not answer:  # closed or silent: no refusal, most likely the wrong port or scheme
            raise LinkError(no_connack(url, broker.tls, closed, timeout_s))
        raise LinkError("broker %s refused the connection: CONNACK %s" % (url, connack_text(answer[0], version)))
    raise AssertionError("unreachable")


def tls_context(tls: TlsOptions) -> ssl.SSLContext:
    """The client-side TLS context for raw sockets (tcu doctor's step-by-step checks)."""
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as err:
        raise UsageError("TLS options: %s" % err) from None
    return context
