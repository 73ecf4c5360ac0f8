"""What every fleet test checks: a sniffer on the broker, and the store against what the
units sent."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
from conftest import Mosquitto

from tcu.emulator.uplink import parse_uplink_topic
from tcu.protocol import messages
from tcu.tools.sessions import load_sessions
from tcu.tools.store import open_store


class Sniffer:
    """Every message on tcu/v1/#: position bytes (located uplinks) per unit, decoded here."""

    def __init__(self, broker: Mosquitto) -> None:
        self.position_bytes: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sniffer-%d" % time.monotonic_ns(),
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe("tcu/v1/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        unit = message.topic.split("/")[2]
        with self.lock:
            self.messages[unit] += 1
            if parse_uplink_topic(message.topic)[0]:
                msg = messages.decode(bytes(message.payload))
                if msg.type in (messages.T_REPORT, messages.T_BATCH):
                    self.position_bytes[unit] += len(message.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def check_fleet(store: str, sent: list[dict[str, Any]], sniffer: Sniffer, units: set[str]) -> dict[str, Any]:
    """Every uplink sent is stored exactly once; no located report outside its session; a unit
    that was never triggered put 0 position bytes on the broker (and did say it was online)."""
    located = {(r["unit"], r["boot"], r["seq"]) for r in sent if r["located"]}
    db = open_store(store)
    keys = db.keys()
    db.close()
    assert len(keys) == len(set(keys)) == len(sent)  # each stored once (the key is unique; none lost)
    assert {(r["unit"], r["boot"], r["seq"]) for r in sent} == set(keys) and located <= set(keys)
    sessions = load_sessions(store)
    outside = [(s.name, p.dt) for s in sessions for p in s.points
               if s.start_s is None or s.end_s is None or not s.start_s <= (s.time_of(p) or -1) <= s.end_s]
    assert outside == []  # 0 located reports outside their session
    assert sum(len(s.points) for s in sessions) >= len(located) > 0
    triggered = {r["unit"] for r in sent if r["session"]}
    never = units - triggered
    assert all(sniffer.messages[u] >= 2 for u in never)  # its online status, and offline
    assert sum(sniffer.position_bytes[u] for u in never) == 0  # never triggered: 0 position bytes
    assert sum(sniffer.position_bytes.values()) > 0
    return {"uplinks": len(sent), "located": len(located), "sessions": len(sessions),
            "purposes": Counter(s.purpose for s in sessions), "never": len(never)}
