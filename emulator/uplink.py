"""MQTT over paho: connect with a deadline, publish at QoS 1, and wait until the broker
has acknowledged every message before calling it delivered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from tcu.firmware.errors import LinkError, UsageError

DEFAULT_PORT = 1883
TOPIC_ROOT = "tcu/v1"
ALL_UPLINKS = TOPIC_ROOT + "/+/up"


def uplink_topic(unit_id: str) -> str:
    return "%s/%s/up" % (TOPIC_ROOT, unit_id)


def unit_of_topic(topic: str) -> str:
    parts = topic.split("/")
    return parts[2] if len(parts) == 4 else ""


def parse_broker_url(url: str) -> tuple[str, int]:
    """mqtt://HOST[:PORT] -> (host, port)."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise UsageError("--broker %r: expected mqtt://HOST[:PORT], e.g. mqtt://127.0.0.1:1883" % url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise UsageError("--broker %r: the port is not a number from 1 to 65535" % url) from None
    return parts.hostname, port


def open_client(url: str, client_id: str, timeout_s: float = 5.0,
                setup: Callable[[mqtt.Client], None] | None = None) -> mqtt.Client:
    """A paho client connected to url with its network loop running, or LinkError.

    paho's connect() only opens the socket; a broker that accepts TCP but never sends
    CONNACK (or refuses the client) is caught by waiting for on_connect with a deadline.
    """
    host, port = parse_broker_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect_timeout = timeout_s
    connected = threading.Event()
    refusal: list[str] = []

    def on_connect(c: mqtt.Client, userdata: object, flags: object, reason: object, props: object = None) -> None:
        if getattr(reason, "is_failure", False):
            refusal.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    if setup is not None:
        setup(client)
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ValueError) as err:
        raise LinkError("broker %s did not answer: %s" % (url, getattr(err, "strerror", None) or err)) from None
    client.loop_start()
    if not connected.wait(timeout_s) or refusal:
        client.disconnect()
        client.loop_stop()
        why = refusal[0] if refusal else "no answer to CONNECT within %.0f s" % timeout_s
        raise LinkError("broker %s refused the connection: %s" % (url, why))
    return client


class MqttUplink:
    """The unit's uplink: QoS 1 publishes, counted until the broker acknowledges them."""

    def __init__(self, url: str, unit_id: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.topic = uplink_topic(unit_id)
        self.timeout_s = timeout_s
        self._lock = threading.Condition()
        self._sent = 0
        self._acked = 0

        def setup(client: mqtt.Client) -> None:
            client.on_publish = self._on_publish

        self._client = open_client(url, "tcu-%s" % unit_id, timeout_s, setup)

    def __enter__(self) -> MqttUplink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        with self._lock:
            self._acked += 1
            self._lock.notify_all()

    def publish(self, payload: bytes, qos: int = 1) -> None:
        with self._lock:
            self._sent += 1
        info = self._client.publish(self.topic, payload, qos=qos, retain=False)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise LinkError("publish to %s failed: %s" % (self.url, mqtt.error_string(info.rc)))

    def drain(self, timeout_s: float | None = None) -> None:
        """Block until the broker acknowledged every publish; LinkError if it does not."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        with self._lock:
            while self._acked < self._sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkError("broker %s acknowledged %d of %d uplinks" % (self.url, self._acked, self._sent))
                self._lock.wait(left)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
