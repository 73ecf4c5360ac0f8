"""The few MQTT packets a publishing unit needs (3.1.1 and 5), encoded and parsed by hand,
and a socket (TCP or TLS) that carries them.

Why not paho here: paho spends ~40 us of Python per QoS 1 message (a Condition per publish,
a Properties object per PUBACK, one send() per packet, three recv() per PUBACK), which at a
replay's rates costs more than the unit itself. The unit only publishes: CONNECT (with a
will and, in MQTT 5, a session expiry), PUBLISH QoS 1, PUBACK, PINGREQ, DISCONNECT. A burst
of publishes leaves in one send(); every PUBACK in a read is parsed from one buffer.
The backend and the tests use paho.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time

from tcu.emulator.uplink import Broker, TlsOptions
from tcu.firmware.errors import LinkError, UsageError

MQTT311, MQTT5 = 4, 5
CONNECT, CONNACK, PUBLISH, PUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 12, 13, 14
PROP_SESSION_EXPIRY = 0x11
MAX_PACKET = 1 << 20
_U16 = struct.Struct("!H")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def encode_connect(version: int, client_id: str, keepalive_s: int, clean: bool, session_expiry_s: int,
                   will_topic: str, will_payload: bytes) -> bytes:
    flags = 0x02 * clean | 0x04 | 0x08 | 0x20  # clean, will, will QoS 1, will retained
    head = _str(b"MQTT") + bytes([version, flags]) + _U16.pack(keepalive_s)
    payload = _str(client_id.encode())
    if version == MQTT5:
        props = bytes([PROP_SESSION_EXPIRY]) + struct.pack("!I", session_expiry_s)
        head += varint(len(props)) + props
        payload += b"\x00"  # no will properties
    payload += _str(will_topic.encode()) + _str(will_payload)
    return _packet(CONNECT << 4, head + payload)


def encode_publish(version: int, topic: bytes, mid: int, payload: bytes, retain: bool = False) -> bytes:
    """QoS 1."""
    body = _str(topic) + _U16.pack(mid) + (b"\x00" if version == MQTT5 else b"") + payload
    return _packet(PUBLISH << 4 | 0x02 | retain, body)


PINGREQ_PACKET = bytes([PINGREQ << 4, 0])
DISCONNECT_PACKET = bytes([DISCONNECT << 4, 0])


class Parser:
    """Bytes in, (type, flags, body) packets out; incremental."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, int, bytes]] = []
        pos = 0
        while True:
            if len(buf) - pos < 2:
                break
            length, mult, i = 0, 1, pos + 1
            while True:
                if i >= len(buf):
                    length = -1
                    break
                byte = buf[i]
                length += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    break
                if i - pos > 4:
                    raise LinkError("broker sent a malformed packet length")
            if length > MAX_PACKET:  # before waiting for it: never buffer a huge claimed length
                raise LinkError("broker sent a packet of %d bytes" % length)
            if length < 0 or len(buf) - i < length:
                break
            out.append((buf[pos] >> 4, buf[pos] & 0x0F, bytes(buf[i:i + length])))
            pos = i + length
        del buf[:pos]
        return out


def connack_reason(version: int, body: bytes) -> int:
    if len(body) < 2:
        raise LinkError("broker sent a malformed CONNACK")
    return body[1]


def puback(version: int, body: bytes) -> tuple[int, int]:
    """(packet id, reason code: 0 success, >= 0x80 refused)."""
    if len(body) < 2:
        raise LinkError("broker sent a malformed PUBACK")
    return _U16.unpack_from(body)[0], body[2] if version == MQTT5 and len(body) > 2 else 0


class Connection:
    """A connected socket to the broker (TLS for mqtts://), with keep-alive bookkeeping."""

    def __init__(self, broker: Broker, tls: TlsOptions | None, timeout_s: float, keepalive_s: int) -> None:
        try:
            sock = socket.create_connection((broker.host, broker.port), timeout=timeout_s)
        except OSError as err:
            raise LinkError("broker %s did not answer: %s" % (broker.url, err.strerror or err)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a lone crash report must not wait
        if broker.tls:
            try:
                sock = tls_context(tls or TlsOptions()).wrap_socket(sock, server_hostname=broker.host)
            except ssl.SSLError as err:
                sock.close()
                raise LinkError("broker %s refused TLS: %s" % (broker.url, err)) from None
            except OSError as err:
                sock.close()
                raise LinkError("broker %s did not answer: %s" % (broker.url, err.strerror or err)) from None
        self.sock = sock
        self.url = broker.url
        self.keepalive_s = keepalive_s
        self.parser = Parser()
        self.last_in = self.last_out = time.monotonic()
        self.ping_sent = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise LinkError("link to %s lost while sending: %s" % (self.url, err.strerror or err)) from None
        self.last_out = time.monotonic()

    def receive(self) -> list[tuple[int, int, bytes]]:
        """Read what arrived (call when select() says readable)."""
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return []
        except OSError as err:
            raise LinkError("link to %s lost: %s" % (self.url, err.strerror or err)) from None
        if not data:
            raise LinkError("link to %s closed by the broker" % self.url)
        self.last_in = time.monotonic()
        self.ping_sent = False
        return self.parser.feed(data)

    def tick(self, now: float) -> None:
        """Keep-alive: ping when quiet for half the interval; a broker silent for 1.5
        intervals (a ping unanswered) is a dead link."""
        if now - self.last_in >= 1.5 * self.keepalive_s:
            raise LinkError("link to %s dead: nothing received for %.1f s" % (self.url, now - self.last_in))
        if not self.ping_sent and (now - self.last_out >= self.keepalive_s / 2 or
                                   now - self.last_in >= self.keepalive_s / 2):
            self.ping_sent = True
            self.send(PINGREQ_PACKET)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def tls_context(tls: TlsOptions) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as err:
        raise UsageError("TLS options: %s" % err) from None
    return context
