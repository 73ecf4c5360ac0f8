"""The unit's MQTT link on its own: the packet codec, falling back to MQTT 3.1.1, and
finding a dead link by keep-alive."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from tcu.emulator import mqtt_wire as wire
from tcu.emulator.broker import EmbeddedBroker
from tcu.emulator.link import DurableUplink
from tcu.emulator.outbox import Outbox
from tcu.emulator.outbox_runner import crash_and_sos_uplinks
from tcu.emulator.uplink import parse_uplink_topic
from tcu.firmware.errors import LinkError


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


def test_malformed_packets_and_topics_from_the_network_raise_no_stray_exception() -> None:
    with pytest.raises(LinkError, match="malformed packet length"):
        wire.Parser().feed(bytes([wire.PUBACK << 4, 0x80, 0x80, 0x80, 0x80, 0x01]))
    with pytest.raises(LinkError, match="packet of"):
        wire.Parser().feed(bytes([wire.PUBLISH << 4]) + wire.varint(wire.MAX_PACKET + 1))
    with pytest.raises(LinkError, match="malformed PUBACK"):
        wire.puback(wire.MQTT5, b"\x00")
    with pytest.raises(LinkError, match="malformed CONNACK"):
        wire.connack_reason(wire.MQTT5, b"")
    assert parse_uplink_topic("tcu/v1/u1/up/7") == ("u1", 7)
    assert parse_uplink_topic("tcu/v1/u1/up") == ("u1", None)
    for topic in ("tcu/v1/u1/up/\u00b2", "tcu/v1/u1/up/-1", "tcu/v1/u1/up/%d" % (1 << 32), "tcu/v1/u1/down"):
        assert parse_uplink_topic(topic) == ("", None), topic


def test_a_broker_that_speaks_only_mqtt_311_gets_311(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:  # amqtt: 3.1.1 only
        with DurableUplink(broker.url, "unit-311", str(tmp_path / "outbox")) as uplink:
            for action in crash_and_sos_uplinks(5):
                uplink.send(action)
            uplink.drain(10)
            assert uplink.stats.acked == 5 and uplink._versions == [wire.MQTT311]


def test_a_dead_link_is_found_by_keepalive_and_reconnected(fresh_mosquitto, tmp_path: Path) -> None:
    pid = fresh_mosquitto.proc.pid  # a broker of this test's own, frozen: the link dies without a FIN
    try:
        with DurableUplink(fresh_mosquitto.url, "unit-dead", str(tmp_path / "outbox"), keepalive_s=1,
                           connect_timeout_s=1) as uplink:
            os.kill(pid, signal.SIGSTOP)
            uplink.send(crash_and_sos_uplinks(1)[0])
            deadline = time.monotonic() + 1.5 * 1 + 2.0  # 1.5 keep-alives, and some slack
            while "nothing received" not in uplink.stats.last_error and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "nothing received" in uplink.stats.last_error, uplink.stats
            assert len(uplink.outbox) == 1  # never acknowledged: still pending
            os.kill(pid, signal.SIGCONT)
            uplink.drain(10)  # the broker is back: reconnected and delivered
            assert uplink.stats.connects >= 2 and uplink.stats.acked == 1, uplink.stats
    finally:
        os.kill(pid, signal.SIGCONT)


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
