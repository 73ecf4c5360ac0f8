"""The unit's MQTT link on its own: the packet codec, falling back to MQTT 3.1.1, and
finding a dead link by keep-alive."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from tcu.emulator import mqtt_wire as wire
from tcu.emulator.broker import EmbeddedBroker
from tcu.emulator.link import DurableUplink
from tcu.emulator.outbox import Outbox
from tcu.emulator.outbox_runner import crash_and_sos_uplinks


def test_packets_parse_whole_and_one_byte_at_a_time() -> None:
    stream = b"".join([
        wire.encode_publish(wire.MQTT5, b"tcu/v1/u/up/7", 1, b"x" * 300),
        bytes([wire.PUBACK << 4, 2, 0, 9]),
        bytes([wire.PUBACK << 4, 3, 0, 10, 0x87]),
        bytes([wire.PINGRESP << 4, 0]),
    ])
    whole = wire.Parser().feed(stream)
    parser = wire.Parser()
    bytewise = [packet for i in range(len(stream)) for packet in parser.feed(stream[i:i + 1])]
    assert whole == bytewise and [kind for kind, _, _ in whole] == [wire.PUBLISH, wire.PUBACK, wire.PUBACK,
                                                                     wire.PINGRESP]
    assert wire.puback(wire.MQTT5, whole[1][2]) == (9, 0)
    assert wire.puback(wire.MQTT5, whole[2][2]) == (10, 0x87)
    assert wire.varint(321) == b"\xc1\x02"


def test_a_broker_that_speaks_only_mqtt_311_gets_311(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:  # amqtt: 3.1.1 only
        with DurableUplink(broker.url, "unit-311", str(tmp_path / "outbox")) as uplink:
            for action in crash_and_sos_uplinks(5):
                uplink.send(action)
            uplink.drain(10)
            assert uplink.stats.acked == 5 and uplink._versions == [wire.MQTT311]


class SilentBroker:
    """Accepts, answers CONNECT with CONNACK, then never says anything again: a dead link."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = "mqtt://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            conn.recv(4096)
            conn.sendall(bytes([wire.CONNACK << 4, 3, 0, 0, 0]))

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


def test_a_dead_link_is_found_by_keepalive_and_reconnected(tmp_path: Path) -> None:
    broker = SilentBroker()
    try:
        with DurableUplink(broker.url, "unit-dead", str(tmp_path / "outbox"), keepalive_s=1) as uplink:
            uplink.send(crash_and_sos_uplinks(1)[0])
            deadline = time.monotonic() + 1.5 * 1 + 2.0  # 1.5 keep-alives, then a reconnect
            while uplink.stats.connects < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert uplink.stats.connects >= 2, uplink.stats
            assert "nothing received" in uplink.stats.last_error
            assert len(uplink.outbox) == 1  # never acknowledged: still pending
    finally:
        broker.close()


def test_offline_every_uplink_is_on_disk_when_send_returns(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = "mqtt://127.0.0.1:%d" % closed.getsockname()[1]
    path = tmp_path / "outbox"
    with DurableUplink(url, "unit-offline", str(path), connect_now=False) as uplink:
        for action in crash_and_sos_uplinks(3):
            uplink.send(action)
        assert [r.seq for r in Outbox(path).pending()] == [1, 2, 3]  # what a SIGKILL now would leave
        assert uplink.stats.connects == 0 and "did not answer" in uplink.stats.last_error
