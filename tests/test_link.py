"""The unit's MQTT link on its own: packet sizes and reason names, falling back to MQTT 3.1.1, and
finding a dead link by keep-alive."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from tcu.emulator import mqtt_limits as limits
from tcu.emulator.broker import EmbeddedBroker
from tcu.emulator.link import DurableUplink
from tcu.emulator.outbox import Outbox
from tcu.emulator.outbox_runner import crash_and_sos_uplinks
from tcu.emulator.uplink import parse_uplink_topic


def test_publish_size_is_what_paho_puts_on_the_wire() -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt import _packet  # noqa: F401  (paho's own encoder: the size must match it)

    for version, protocol in ((limits.MQTT5, mqtt.MQTTv5), (limits.MQTT311, mqtt.MQTTv311)):
        for size in (0, 24, 100, 200, 20000):
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
            packets: list[bytes] = []

            def queue(command: int, packet: bytes, mid: int, qos: int, info: object = None,
                      packets: list[bytes] = packets) -> None:
                packets.append(bytes(packet))

            client._packet_queue = queue  # pyright: ignore[reportAttributeAccessIssue]  # paho internals, on purpose
            client._sock = socket.socket()  # pyright: ignore[reportAttributeAccessIssue]  # "connected": paho encodes instead of refusing
            client._send_publish(1, b"tcu/v1/unit-0001/up/1778745600", b"x" * size, 1, False, False)
            assert len(packets[0]) == limits.publish_size(version, b"tcu/v1/unit-0001/up/1778745600", size)


def test_reason_codes_have_names() -> None:
    assert limits.reason_text("PUBACK", 0x87) == "0x87 Not authorized"
    assert limits.reason_text("CONNACK", 0x86) == "0x86 Bad user name or password"
    assert limits.reason_text("PUBACK", 0x97) == "0x97 Quota exceeded"
    assert limits.reason_text("DISCONNECT", 0x95) == "0x95 Packet too large"
    assert limits.reason_text("CONNACK", 0x9A) == "0x9A Retain not supported"
    assert limits.reason_text("CONNACK", 5, limits.MQTT311) == "5 not authorized"
    assert limits.reason_text("PUBACK", 0x42) == "0x42 unknown reason code"


def test_topics_from_the_network_raise_no_stray_exception() -> None:
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
            assert uplink.stats.acked == 5 and uplink._versions == [limits.MQTT311]


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


def test_no_connection_while_the_data_path_is_down(mosquitto, tmp_path: Path) -> None:
    """The seam for a modem (issue 14): set_data_path(False) drops the link and holds it down;
    uplinks queue durably; set_data_path(True) connects and delivers them."""
    with DurableUplink(mosquitto.url, "unit-radio", str(tmp_path / "outbox")) as uplink:
        uplink.set_data_path(False)
        deadline = time.monotonic() + 5
        while uplink.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not uplink.connected
        connects = uplink.stats.connects
        for action in crash_and_sos_uplinks(3):
            uplink.send(action)
        time.sleep(0.6)
        assert uplink.stats.connects == connects and len(uplink.outbox) == 3 and uplink.stats.acked == 0
        uplink.set_data_path(True)
        uplink.drain(10)
        assert uplink.stats.connects == connects + 1 and uplink.stats.acked == 3
