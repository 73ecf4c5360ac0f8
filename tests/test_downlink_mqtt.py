"""Commands through a real Mosquitto to a running unit: only the authentic, fresh one acts,
also across a restart; and sealed location is opaque to anyone on the broker."""

from __future__ import annotations

import hashlib
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from wire_check import assert_valid

from tcu.emulator.audit import AuditLog, verify
from tcu.emulator.crypto import ed25519_verify, open_uplink
from tcu.emulator.live import LiveUnit
from tcu.emulator.wallclock import Clocks
from tcu.firmware import services as sv
from tcu.firmware.events import FixEvent, TriggerOn
from tcu.firmware.fix import Fix
from tcu.protocol import commands as cmd
from tcu.protocol import cose, messages

UNIT = "unit-live-1"
SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
HMAC_KEY = bytes(range(100, 132))




def verifier() -> cmd.CommandVerifier:
    return cmd.CommandVerifier(UNIT, [cmd.BackendKey(b"ed", cose.ALG_EDDSA, SIGNER.public_key()),
                                      cmd.BackendKey(b"mac", cose.ALG_HMAC_256_256, HMAC_KEY)], ed25519_verify)


class Peer:
    """The backend's side on the broker: publishes downlinks, collects this unit's uplinks."""

    def __init__(self, url: str) -> None:
        self.uplinks: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="peer-%d" % time.monotonic_ns())
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
        self.client.subscribe("tcu/v1/%s/up/#" % UNIT, qos=1)
        self.client.loop_start()
        assert ready.wait(5)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.uplinks.append((message.topic, bytes(message.payload)))
            self._cond.notify_all()

    def command(self, data: bytes) -> None:
        self.client.publish(cmd.downlink_topic(UNIT), data, qos=1).wait_for_publish(5)

    def responses(self, count: int, timeout: float = 10) -> list[messages.Message]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [messages.decode(p) for _, p in self.uplinks if cbor2.loads(p)[0] == 13]
                if len(found) >= count or time.monotonic() > deadline:
                    return found
                self._cond.wait(0.1)

    def decoded(self) -> list[messages.Message]:
        with self._cond:
            return [messages.decode(p) for _, p in self.uplinks if not isinstance(cbor2.loads(p), cbor2.CBORTag)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_only_the_authentic_fresh_command_acts_also_after_a_restart(mosquitto, tmp_path) -> None:
    now = int(time.time())
    stolen = cmd.Command(UNIT, 7, now - 60, now + 300, cmd.CMD_TRACK_STOLEN, {1: "police-7", 2: now + 600})
    valid = cmd.seal_command(stolen, b"ed", cose.ALG_EDDSA, None, SIGNER.sign)
    forged = valid[:-1] + bytes([valid[-1] ^ 1])
    expired = cmd.seal_command(cmd.Command(UNIT, 8, now - 600, now - 300, 1, {1: "x", 2: now + 600}), b"mac",
                               cose.ALG_HMAC_256_256, HMAC_KEY)
    other_unit = cmd.seal_command(cmd.Command("unit-live-2", 9, now - 60, now + 300, 1, {1: "x", 2: now + 600}),
                                  b"ed", cose.ALG_EDDSA, None, SIGNER.sign)
    public_raw = SIGNER.public_key().public_bytes_raw()
    swapped = cmd.seal_command(cmd.Command(UNIT, 10, now - 60, now + 300, 1, {1: "x", 2: now + 600}), b"ed",
                               cose.ALG_HMAC_256_256, public_raw)
    peer = Peer(mosquitto.url)
    try:
        with LiveUnit(mosquitto.url, UNIT, tmp_path, verifier(), clocks=Clocks(ntp=lambda: True)) as unit:
            for data in (forged, expired, other_unit, swapped, valid, valid):
                peer.command(data)
            replies = peer.responses(6)
            assert unit.unit.command_counter == 7 and sv.STOLEN in unit.unit.sessions
        assert [(r.result, r.reason) for r in replies] == [
            (1, cmd.R_UNAUTHENTIC), (1, cmd.R_EXPIRED), (1, cmd.R_UNAUTHENTIC), (1, cmd.R_ALGORITHM),
            (0, None), (1, cmd.R_REPLAYED)]
        starts = [m for m in peer.decoded() if m.type == messages.T_SESSION_START]
        assert [(m.purpose, m.case) for m in starts] == [(sv.P_STOLEN_VEHICLE_TRACKING, "police-7")]

        # same state: counter kept
        with LiveUnit(mosquitto.url, UNIT, tmp_path, verifier(), clocks=Clocks(ntp=lambda: True)) as restarted:
            assert restarted.unit.command_counter == 7
            peer.command(valid)
            replies = peer.responses(7)
            assert not restarted.unit.sessions
        assert (replies[-1].result, replies[-1].reason) == (1, cmd.R_REPLAYED)
        assert len([m for m in peer.decoded() if m.type == messages.T_SESSION_START]) == 1
        for _, payload in peer.uplinks:
            assert_valid(payload)
    finally:
        peer.close()


def test_sealed_location_is_opaque_on_the_broker(mosquitto, tmp_path) -> None:
    key = bytes(range(32))
    peer = Peer(mosquitto.url)
    try:
        with LiveUnit(mosquitto.url, UNIT, tmp_path, e2e_key=key) as unit:
            unit.handle(TriggerOn(sv.CRASH))
            now_ms = unit.now_ms()
            unit.handle(FixEvent(Fix(now_ms, 481374300, 115754900, 3, 51900, 13900, 9000, 11, 94)))
            topic = unit.topic
        deadline = time.monotonic() + 10
        while len(peer.uplinks) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        sealed = [p for t, p in peer.uplinks if isinstance(cbor2.loads(p), cbor2.CBORTag)]
        assert len(sealed) == 2 and all(t == topic for t, _ in peer.uplinks)  # the MSD's start, the report
        for payload in sealed:
            assert_valid(payload, "sealed-uplink")
            assert (481374300).to_bytes(4, "big") not in payload  # the latitude is not on the wire
        with_msd = messages.decode(open_uplink(sealed[0], key, topic))
        assert with_msd.type == messages.T_SESSION_START and with_msd.msd is not None  # a position: sealed too
        report = messages.decode(open_uplink(sealed[1], key, topic))
        assert (report.lat_e7, report.lon_e7) == (481374300, 115754900)
        assert [m.type for m in peer.decoded()] == [messages.T_SESSION_START, messages.T_SESSION_END]
        # The disclosure is on the unit's record: what, when, why, and a digest, no position.
        records = AuditLog(tmp_path / "audit.log").records
        assert [(r["session"], r["purpose"], r["digest"]) for r in records] == [  # the MSD, the report
            (report.sid, "crash_notification", hashlib.sha256(payload).hexdigest()) for payload in sealed]
        assert verify(tmp_path / "audit.log").intact
    finally:
        peer.close()
