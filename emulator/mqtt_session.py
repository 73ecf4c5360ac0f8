"""The unit's MQTT session on paho, driven by the link thread through paho's external-loop API
(`socket()`, `loop_read()`, `loop_write()`, `loop_misc()`): every callback runs in that one
thread, and its select() also watches the producer's wake-up pipe.

One paho client per protocol version lives as long as the link, so a reconnect keeps the
session: paho resends what was in flight with its packet id and DUP set (MQTT-4.4.0-1,
3.3.1-1). The first CONNECT of a process starts clean (paho keeps session state in memory
only: a restarted unit has none, and sends its outbox's backlog as new messages); later
ones keep the session (MQTT 5: Clean Start 0 and a day's Session Expiry; 3.1.1: clean
session off after the first connect).
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt

from tcu.emulator.connect_errors import connect_failed, no_connack
from tcu.emulator.credentials import Credentials
from tcu.emulator.mqtt_limits import MQTT5, PUBACK_CODES, Limits, reason_of, reason_text
from tcu.emulator.uplink import SESSION_EXPIRY_S, Broker, TlsOptions, new_client
from tcu.firmware.errors import LinkError


class Session:
    """A broker session for client_id in one MQTT version (wire numbers: 5 or 4)."""

    def __init__(self, broker: Broker, client_id: str, version: int, tls: TlsOptions | None,
                 keepalive_s: int, connect_timeout_s: float, auth: Credentials | None = None) -> None:
        protocol = mqtt.MQTTv5 if version == MQTT5 else mqtt.MQTTv311
        if auth is not None:
            broker = Broker(broker.url, broker.host, broker.port, broker.tls, auth)
        self.broker, self.version = broker, version
        self.client = new_client(broker, client_id, protocol, tls, persistent=True)
        self.client.connect_timeout = connect_timeout_s
        self.client.max_inflight_messages_set(0)  # the link keeps the window (paho ignores Receive Maximum)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self._paho_puback = self.client._handle_pubackcomp
        self.client._handle_pubackcomp = self._handle_puback  # type: ignore[method-assign]
        self.keepalive_s = keepalive_s
        self._started = False
        self.answer: tuple[int, Limits, bool] | None = None  # (reason, limits, session present)
        self.lost: str | None = None
        self.acks: list[tuple[int, int]] = []  # (packet id, reason) in arrival order

    # -- callbacks (the link thread, inside loop_read) ---------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: Any, reason: object,
                    props: object = None) -> None:
        limits = Limits.from_connack(props) if self.version == MQTT5 else Limits()
        self.answer = (reason_of(reason), limits, bool(getattr(flags, "session_present", False)))

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object,
                    props: object = None) -> None:
        self.acks.append((mid, max(reason_of(reason), 0)))

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: Any, reason: object,
                       props: object = None) -> None:
        code = reason_of(reason)
        if getattr(flags, "is_disconnect_packet_from_server", False):
            self.lost = "broker %s disconnected the unit: DISCONNECT %s" % (
                self.broker.url, reason_text("DISCONNECT", code, self.version))
        elif code == 0x8D:  # paho: keep-alive timeout (no PINGRESP)
            self.lost = "link to %s dead: nothing received within the keep-alive (%d s)" % (
                self.broker.url, self.client.keepalive)
        else:
            self.lost = "link to %s lost (%s)" % (self.broker.url, getattr(reason, "getName", lambda: code)())

    def _handle_puback(self, cmd: Any) -> Any:
        """paho's PUBACK handling, except that a reason code >= 0x80 MQTT 5 does not define for
        PUBACK is a refusal with that code, not a protocol error: Mosquitto 2.0.11 refuses a message
        over its message_size_limit with PUBACK 0x95, which paho 2.2 takes for a malformed
        packet and drops the connection for, and the unit then sent the same message again on
        every reconnect."""
        body = self.client._in_packet["packet"]
        # A PUBACK without properties (all but a refusal with a reason string) is read here too:
        # paho builds a Properties and two ReasonCode objects per PUBACK, a third of its cost.
        if cmd == "PUBACK" and 2 <= len(body) <= 4 and (len(body) < 4 or body[3] == 0):
            reason = body[2] if self.version == MQTT5 and len(body) > 2 else 0
            if reason in PUBACK_CODES or reason >= 0x80:
                mid = int.from_bytes(body[:2], "big")
                with self.client._out_message_mutex:
                    if mid in self.client._out_messages:
                        return self.client._do_on_publish(mid, reason, None)  # type: ignore[arg-type]
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._paho_puback(cmd)

    # -- connecting ---------------------------------------------------------------------------
    def will(self, topic: str, payload: bytes, retain: bool) -> None:
        self.client.will_set(topic, payload, qos=1, retain=retain)

    def connect(self, wait_s: float, closing: Any) -> tuple[int, Limits, bool] | None:
        """CONNECT and wait up to wait_s for CONNACK: (reason, limits, session present), None
        when none came. LinkError when the broker cannot be reached at all."""
        self.answer, self.lost, self.acks = None, None, []
        try:
            if not self._started:
                kwargs: dict[str, Any] = {}
                if self.version == MQTT5:
                    from paho.mqtt.packettypes import PacketTypes
                    from paho.mqtt.properties import Properties

                    props = Properties(PacketTypes.CONNECT)
                    props.SessionExpiryInterval = SESSION_EXPIRY_S
                    kwargs = {"clean_start": mqtt.MQTT_CLEAN_START_FIRST_ONLY, "properties": props}
                else:
                    self.client._clean_session = True  # the first connect; kept from the next
                self.client.connect_async(self.broker.host, self.broker.port, self.keepalive_s, **kwargs)
                self._started = True
            self.client.reconnect()
            sock = self.client.socket()
            if isinstance(sock, socket.socket):  # paho leaves Nagle on: a lone crash report would wait
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            self.client._sock_close()
            raise connect_failed(self.broker.url, self.broker.host, self.broker.port, self.broker.tls, err) from None
        deadline = time.monotonic() + wait_s
        while self.answer is None and self.lost is None and not closing():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.poll(min(left, 0.25), None, keepalive=False)  # paho's would close it at keepalive_s
        if self.version != MQTT5 and self.answer is not None:
            self.client._clean_session = False  # a reconnect keeps the session
        if self.answer is None and self.lost is not None:
            self.close()
            raise LinkError(no_connack(self.broker.url, self.broker.tls, True, wait_s))
        return self.answer

    # -- the connection ----------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Queue a QoS 1 PUBLISH (written at once when the socket takes it); its packet id."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return int(info.mid)

    def in_flight(self) -> int:
        return len(self.client._out_messages)

    def poll(self, timeout: float, wake_fd: int | None, keepalive: bool = True) -> bool:
        """Wait up to timeout for the broker (or wake_fd); process what came. True if wake_fd
        was readable. The link is lost when self.lost is set afterwards."""
        sock = self.client.socket()
        if sock is None:
            self.lost = self.lost or "link to %s lost" % self.broker.url
            return False
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        rlist: list[Any] = [sock] if wake_fd is None else [sock, wake_fd]
        wlist = [sock] if self.client.want_write() else []
        try:
            readable, writable, _ = select.select(rlist, wlist, [], 0.0 if pending else max(timeout, 0.0))
        except (OSError, ValueError):  # the socket was closed under us
            self.lost = self.lost or "link to %s lost" % self.broker.url
            return False
        if writable:
            self.client.loop_write()
        if sock in readable or pending:
            self.client.loop_read()
        if keepalive and self.client.socket() is not None:
            self.client.loop_misc()  # keep-alive: PINGREQ, and a dead link found
        return wake_fd is not None and wake_fd in readable

    def flush(self, timeout_s: float) -> None:
        """Write what paho still holds (a goodbye), up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        while self.client.want_write() and self.client.socket() is not None and time.monotonic() < deadline:
            self.poll(0.05, None)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.flush(0.5)
        self.close()

    def close(self) -> None:
        self.client._sock_close()
