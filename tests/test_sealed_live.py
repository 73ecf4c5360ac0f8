"""The golden sealed vector documents how to open what units send: a live sealed uplink, taken
off a real Mosquitto by a plain subscriber, opens with an independent COSE implementation
(pycose) by exactly the procedure protocol/golden/index.json gives: AES-GCM with the
backend's key, external AAD = the full topic the message arrived on."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt

from tcu.emulator.replay import parse_trigger
from tcu.emulator.uplink import ALL_UPLINKS
from tcu.protocol import messages
from tcu.tools import golden
from tcu.tools.replay_cmd import replay_to_broker


def pycose_open(sealed: bytes, key: bytes, aad: str) -> bytes:
    from pycose.keys import SymmetricKey
    from pycose.messages import CoseMessage, Enc0Message

    tagged = cbor2.loads(sealed)  # cbor2 6 gives immutable items, which pycose 1.1 refuses
    items = list(tagged.value)
    items[1] = dict(items[1])
    message = CoseMessage._COSE_MSG_ID[tagged.tag].from_cose_obj(items, True)
    assert isinstance(message, Enc0Message)
    message.key, message.external_aad = SymmetricKey(k=key), aad.encode()
    return bytes(message.decrypt())  # pyright: ignore  # pycose: no narrowing


def test_the_golden_sealed_vector_opens_with_its_documented_aad() -> None:
    index = json.loads((golden.GOLDEN_DIR / "index.json").read_text())
    vector, keys = index["vectors"]["sealed-report"], index["test_keys"]
    assert vector["aad"] == "tcu/v1/%s/up/%d" % (keys["unit"], golden.BOOT)  # a unit's real topic, in full
    plain = pycose_open(bytes.fromhex(vector["hex"]), bytes.fromhex(keys["aes256gcm"]), vector["aad"])
    assert plain == bytes.fromhex(index["vectors"]["report"]["hex"])


def test_a_live_sealed_uplink_opens_by_the_vectors_procedure(mosquitto, traces, tmp_path: Path) -> None:
    key = bytes(range(32))
    got: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sealed-%d" % time.monotonic_ns())
    client.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe(ALL_UPLINKS.replace("+", "unit-sealed"), qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(5)
        result = replay_to_broker(str(traces / "quectel-l76k-dual.log"), [parse_trigger("crash@5+20")],
                                  mosquitto.url, "unit-sealed", outbox=str(tmp_path / "outbox"), e2e_key=key)
        deadline = time.monotonic() + 10
        while len(got) < result.replay.uplinks and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    sealed = [(topic, payload) for topic, payload in got if payload[:1] == b"\xd0"]
    assert result.replay.located >= 5 and len(sealed) == result.replay.located
    opened = []
    for topic, payload in sealed:
        assert topic == "tcu/v1/unit-sealed/up/%d" % result.boot
        opened.append(messages.decode(pycose_open(payload, key, topic)))
    # Located, so sealed: the crash session's reports, and its start, which carries the eCall MSD.
    starts = [m for m in opened if m.type == messages.T_SESSION_START]
    assert len(starts) == 1 and starts[0].msd is not None
    assert sum(m.type == messages.T_REPORT for m in opened) == len(opened) - 1 >= 5
