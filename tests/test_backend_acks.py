"""The backend acknowledges an uplink only after storing it, and only on the connection it came
by (MQTT 5 §4.4: a PUBACK answers a PUBLISH of that network connection; packet ids are reused
on the next). Uplinks arrive, the commit is held back (the batch gap), the connection fails and
comes back, then the commit: the acknowledgements of the old connection are dropped, never sent
on the new one, where their packet ids may name other messages (a clean session) or the
broker's redelivery of the same ones (a persistent session: each would be acknowledged twice).
Asserted on the packets between the backend and a real Mosquitto."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest
from conftest import Mosquitto
from helpers import wait_until
from mqtt_proxy import PUBACK, PUBLISH, SUBACK, MqttProxy

from tcu.emulator.uplink import uplink_topic
from tcu.protocol import messages
from tcu.tools import backend as backend_module
from tcu.tools.backend import Backend


def publish(broker: Mosquitto, unit: str, seqs: range) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="acks-pub-%d" % time.monotonic_ns(),
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        infos = [client.publish(uplink_topic(unit, 7), messages.encode_session_start(
            seq, 1, 1, 1_700_000_000 + seq, 1, None), qos=1) for seq in seqs]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def acks_and_publishes(proxy: MqttProxy) -> tuple[list[tuple[int, int | None]], list[tuple[int, int | None]]]:
    """(connection, packet id) of each PUBACK from the backend that answers no PUBLISH the
    broker sent on that connection (since that id was last acknowledged there), and of each
    PUBLISH not acknowledged yet."""
    open_ids: dict[int, list[int | None]] = {}
    stray = []
    for packet in list(proxy.packets):
        ids = open_ids.setdefault(packet.conn, [])
        if packet.kind == PUBLISH and not packet.upstream and packet.qos:
            ids.append(packet.mid)
        elif packet.kind == PUBACK and packet.upstream:
            if packet.mid in ids:
                ids.remove(packet.mid)
            else:
                stray.append((packet.conn, packet.mid))
    return stray, [(conn, mid) for conn, ids in open_ids.items() for mid in ids]


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "clean"])
def test_acknowledgements_never_cross_a_reconnection(
        mosquitto: Mosquitto, persistent: bool, monkeypatch: pytest.MonkeyPatch, figures) -> None:
    monkeypatch.setattr(backend_module, "BATCH_S", 4.0)  # commits at least 4 s apart
    proxy = MqttProxy(mosquitto.port)
    unit = "acks-%s-%d" % ("p" if persistent else "c", time.monotonic_ns())
    backend = Backend(proxy.url, client_id="acks-backend-%d" % time.monotonic_ns(), persistent=persistent)
    try:
        publish(mosquitto, unit, range(1, 2))
        assert wait_until(lambda: backend.stored() == 1)  # committed at once: the backend was idle
        publish(mosquitto, unit, range(2, 7))  # these wait for the next commit, 4 s on
        assert wait_until(lambda: backend.received >= 6, timeout=3), backend.received
        proxy.drop()
        assert wait_until(lambda: any(p.conn == 2 and p.kind == SUBACK for p in proxy.packets), timeout=10)
        publish(mosquitto, unit, range(7, 12))  # the clean session's ids start again from 1
        assert wait_until(lambda: backend.stored() == 11, timeout=20), backend.stored()
        # the new connection's PUBLISHes all answered (the old one's stay unanswered: it is gone)
        assert wait_until(lambda: all(conn == 1 for conn, _ in acks_and_publishes(proxy)[1]), timeout=10)
        stray, _ = acks_and_publishes(proxy)
        assert stray == [], "PUBACKs (connection, packet id) answering no PUBLISH of theirs: %s" % stray
        assert sorted(seq for _, _, seq in backend.stored_keys()) == list(range(1, 12))  # once each
        assert backend.stale_acks == 5  # uplinks 2-6: received on the lost connection, committed after it
        figures("%s session: 11 uplinks stored once, %d acknowledgements of the lost connection dropped, "
                "0 PUBACKs without their PUBLISH on the new one"
                % ("persistent" if persistent else "clean", backend.stale_acks))
    finally:
        backend.close()
        proxy.close()
