"""The unit's MQTT session asserted on the packets themselves, through an MQTT-aware loopback
proxy (tests/mqtt_proxy.py) between the unit and a real Mosquitto: DUP and the same packet id
on every resend after the broker is killed and restarted, in flight never above the broker's
Receive Maximum, no PUBLISH larger than its Maximum Packet Size, nothing retried in a loop."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from brokers import mosquitto
from mqtt_proxy import CONNACK, MqttProxy

from tcu.emulator.crypto import seal_uplink
from tcu.emulator.link import DurableUplink
from tcu.emulator.outbox_runner import crash_and_sos_uplinks
from tcu.emulator.uplink import uplink_topic
from tcu.firmware.errors import LinkError
from tcu.firmware.events import Publish

RECEIVE_MAX = 5


def wait_until(cond, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("fault, cycles", [("kill", 1), ("freeze", 1),
                                           pytest.param("kill", 20, marks=pytest.mark.soak)])
def test_resends_after_a_broker_restart_carry_dup_and_their_packet_id_within_receive_maximum(
        fault: str, cycles: int, tmp_path: Path, figures) -> None:
    """kill: SIGKILL and a restart (Mosquitto 2.0 restores no session of a client without
    subscriptions: Session Present 0). freeze: SIGSTOP until the keep-alive finds the link dead,
    then SIGCONT: the same broker, Session Present 1, the session really kept. The soak
    variant (pytest -m soak) kills the broker 20 times."""
    with mosquitto(tmp_path, "max_inflight_messages %d\n" % RECEIVE_MAX, persistent=True) as broker:
        proxy = MqttProxy(broker.port)
        actions = crash_and_sos_uplinks(40 + 80 * cycles)
        try:
            with DurableUplink(proxy.url, "unit-dup", str(tmp_path / "outbox"), keepalive_s=1) as uplink:
                for action in actions[:40]:
                    uplink.send(action)
                uplink.drain(10)
                since = time.time()  # Mosquitto saves its sessions every second: this one on disk
                wait_until(lambda: (tmp_path / "mosquitto.db").exists()
                           and (tmp_path / "mosquitto.db").stat().st_mtime > since + 0.1)
                for cycle in range(cycles):
                    proxy.hold_acks()  # the broker gets them, the unit never hears: all stay in flight
                    before = len(proxy.publishes())
                    for action in actions[40 + 80 * cycle:120 + 80 * cycle]:
                        uplink.send(action)
                    wait_until(lambda before=before: len(proxy.publishes()) >= before + RECEIVE_MAX)
                    # For good on this connection: a PUBACK the broker sent before the fault, still
                    # in the proxy's socket when acks are let through again, must not reach the unit
                    proxy.cut_acks()
                    if fault == "kill":
                        broker.stop(signal.SIGKILL)
                        proxy.hold_acks(False)
                        broker.start()
                    else:
                        assert broker.proc is not None
                        broker.proc.send_signal(signal.SIGSTOP)
                        wait_until(lambda: not uplink.connected)
                        proxy.hold_acks(False)
                        broker.proc.send_signal(signal.SIGCONT)
                    uplink.drain(30)
                stats = uplink.stats
        finally:
            proxy.close()
    publishes = [p for p in proxy.publishes() if p.qos == 1]
    seen: dict[bytes, int] = {}
    resends = 0
    for packet in publishes:
        first_mid = seen.setdefault(packet.payload, packet.mid or 0)
        if first_mid != packet.mid or packet is not next(p for p in publishes if p.payload == packet.payload):
            resends += 1
            assert packet.dup and packet.mid == first_mid, packet  # MQTT-3.3.1-1, MQTT-4.4.0-1
        else:
            assert not packet.dup, packet
    connacks = [p for p in proxy.packets if p.kind == CONNACK]
    figures("%s: %d PUBLISH packets, %d resends after the fault, all with DUP and their packet id; "
            "in flight at most %d (Receive Maximum %d); %d connects, session present on reconnect: %s" % (
                fault, len(publishes), resends, proxy.max_inflight, RECEIVE_MAX, stats.connects,
                bool(connacks[-1].payload[0] & 1)))
    # each fault: a full window in flight, less the online status when it took a slot
    assert resends >= (RECEIVE_MAX - 1) * cycles and stats.connects >= 1 + cycles
    assert fault == "kill" or connacks[-1].payload[0] & 1  # frozen, not killed: the session was kept
    assert proxy.max_inflight == RECEIVE_MAX  # the window filled, never above
    assert Counter(p.payload for p in publishes).keys() >= {a.payload for a in actions}


def test_no_publish_over_maximum_packet_size_and_none_retried(tmp_path: Path) -> None:
    with mosquitto(tmp_path, "max_packet_size 80\n") as broker:
        proxy = MqttProxy(broker.port)
        actions = crash_and_sos_uplinks(30)
        try:
            with DurableUplink(proxy.url, "u-80", str(tmp_path / "outbox")) as uplink:
                logged: list[str] = []
                uplink.report_problems_to(logged.append)  # what `tcu run` logs
                topic = uplink_topic("u-80", uplink.boot)
                for i, action in enumerate(actions):
                    if i % 3 == 1:  # every third sealed: 100 bytes and more on the wire
                        action = Publish(seal_uplink(action.payload, bytes(32), topic), action.priority, action.sid,
                                         action.seq, action.located)
                    uplink.send(action)
                with pytest.raises(LinkError, match="announces Maximum Packet Size 80 bytes.*10 such uplinks"):
                    uplink.drain(10)
                time.sleep(1.0)  # nothing more happens: no reconnect, no retry
                stats = uplink.stats
                assert len(uplink.outbox) == 10  # kept for a broker that takes them
                assert len(logged) == 1 and "Maximum Packet Size 80 bytes" in logged[0]  # reported once
        finally:
            proxy.close()
    publishes = proxy.publishes()
    assert max(p.size for p in publishes) <= 80
    assert stats.too_large == 10 and stats.connects == 1 and stats.acked == 20
    assert len([p for p in publishes if p.qos == 1]) == 20 + 2  # the uplinks that fit, online and offline status
