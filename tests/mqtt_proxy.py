"""An MQTT-aware loopback proxy for tests: it forwards bytes between clients and a broker and
records every packet each way (type, flags, packet id, size), so a test asserts on what went
over the wire: DUP on resends, in-flight never above Receive Maximum, packet sizes.

`hold_acks()` stops forwarding what the broker sends (PUBACKs stay with the proxy), so the
client's publishes stay in flight, as when a broker dies before acknowledging them.
`cut_acks()` does that for good on the connections open now (new ones are not affected): a
broker about to be killed acknowledges nothing more that the client could learn of.
`drop()` cuts the connections open now, as a failing network path does.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

PUBLISH, CONNECT, CONNACK, PUBACK, SUBACK = 3, 1, 2, 4, 9


@dataclass
class Packet:
    conn: int  # connection number, from 1
    upstream: bool  # client -> broker
    kind: int
    flags: int
    size: int  # the whole packet, fixed header included
    mid: int | None = None
    payload: bytes = b""  # a PUBLISH's payload; the body of any other packet
    at: float = 0.0

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3


def split(buf: bytearray) -> list[tuple[int, int, bytes]]:
    """Whole packets at the front of buf (removed): (first byte, size, body)."""
    out = []
    while len(buf) >= 2:
        length, mult, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return out
            length += (buf[i] & 0x7F) * mult
            mult *= 128
            i += 1
            if not buf[i - 1] & 0x80:
                break
        if len(buf) < i + length:
            return out
        out.append((buf[0], i + length, bytes(buf[i:i + length])))
        del buf[:i + length]
    return out


class MqttProxy:
    def __init__(self, broker_port: int, version: int = 5) -> None:
        self.broker_port, self.version = broker_port, version
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = "mqtt://127.0.0.1:%d" % self.port
        self.packets: list[Packet] = []
        self.max_inflight = 0
        self._inflight: dict[int, set[int]] = {}
        self._held = threading.Event()
        self._cut: set[int] = set()  # connections whose PUBACKs are never forwarded again
        self._lock = threading.Lock()
        self._conns = 0
        self._socks: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold_acks(self, on: bool = True) -> None:
        (self._held.set if on else self._held.clear)()

    def cut_acks(self) -> None:
        with self._lock:
            self._cut.update(self._inflight)

    def drop(self) -> None:
        """Cut every connection open now (both sides see the TCP connection end); new ones are
        accepted as before: a network path that failed and came back."""
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def publishes(self) -> list[Packet]:
        with self._lock:
            return [p for p in self.packets if p.upstream and p.kind == PUBLISH]

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for sock in self._socks:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                broker = socket.create_connection(("127.0.0.1", self.broker_port), timeout=5)
            except OSError:
                client.close()
                continue
            broker.settimeout(None)
            with self._lock:
                self._conns += 1
                conn = self._conns
                self._inflight[conn] = set()
                self._socks += [client, broker]
            threading.Thread(target=self._pump, args=(conn, client, broker, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(conn, broker, client, False), daemon=True).start()

    def _pump(self, conn: int, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        buf = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                for first, size, body in split(buf):
                    packet = self._note(conn, upstream, first, size, body)
                    if not upstream and packet.kind == PUBACK:
                        if self._held.is_set() or conn in self._cut:
                            continue  # dropped: the client never learns of it, it stays in flight
                        with self._lock:
                            self._inflight[conn].discard(packet.mid or 0)
                    dst.sendall(_frame(first, body))
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _note(self, conn: int, upstream: bool, first: int, size: int, body: bytes) -> Packet:
        kind, flags = first >> 4, first & 0x0F
        packet = Packet(conn, upstream, kind, flags, size, at=time.monotonic())
        if kind == PUBLISH:
            topic_len = int.from_bytes(body[:2], "big")
            pos = 2 + topic_len
            if packet.qos:
                packet.mid = int.from_bytes(body[pos:pos + 2], "big")
                pos += 2
            if self.version == 5:
                props, n = _read_varint(body, pos)
                pos = n + props
            packet.payload = body[pos:]
        else:
            packet.payload = body
            if kind == PUBACK:
                packet.mid = int.from_bytes(body[:2], "big")
        with self._lock:
            self.packets.append(packet)
            flight = self._inflight[conn]
            if upstream and kind == PUBLISH and packet.qos:
                flight.add(packet.mid or 0)
                self.max_inflight = max(self.max_inflight, len(flight))
        return packet


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, mult = 0, 1
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) * mult
        mult *= 128
        if not byte & 0x80:
            return value, pos


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body
