"""`tcu backend tap`: a read-only wire tap on a real Mosquitto. Every message a unit replay
with a crash publishes shows with its topic, its exact size, CBOR diagnostic notation that
parses back to the very bytes, and its decoded fields; garbage shows as hex and a reason."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cbor_diag import diag2cbor
from test_daemon import tcu, wait_until

from tcu.firmware.errors import UsageError
from tcu.protocol import messages
from tcu.tools.backend import Backend
from tcu.tools.golden import SEALED_TOPIC
from tcu.tools.tap_cmd import check_filter
from tcu.tools.tap_view import TapView, diagnostic, format_lines

GOLDEN = Path(__file__).resolve().parents[1] / "protocol" / "golden"
EXCERPT = str(Path(__file__).parent / "data" / "ublox-lea-4h-excerpt.log")
UNIT = "tap-unit-1"


def test_the_notation_of_every_golden_vector_parses_back_to_its_bytes() -> None:
    vectors = json.loads((GOLDEN / "index.json").read_text())["vectors"]
    for name, vector in vectors.items():
        data = bytes.fromhex(vector["hex"])
        assert diag2cbor(diagnostic(data)) == data, name
    report = bytes.fromhex(vectors["report"]["hex"])
    assert diagnostic(report) == "[10,2,1,1,0,481374300,115754900,50,22]"  # RFC 8949 section 8, by hand
    entry = TapView().describe("tcu/v1/unit-0001/up/7", report)
    assert (entry["bytes"], entry["meaning"]["kind"], entry["meaning"]["unit"]) == (19, "report", "unit-0001")
    assert (entry["meaning"]["lat"], entry["meaning"]["lon"], entry["meaning"]["course"]) == (48.13743, 11.57549, 44)
    sealed = TapView().describe("tcu/v1/unit-0001/up/7", bytes.fromhex(vectors["sealed-report"]["hex"]))
    assert sealed["meaning"]["kind"] == "sealed" and "--e2e-key" in sealed["meaning"]["note"]
    key = bytes.fromhex(json.loads((GOLDEN / "index.json").read_text())["test_keys"]["aes256gcm"])
    opened = TapView(key).describe(SEALED_TOPIC, bytes.fromhex(vectors["sealed-report"]["hex"]))
    assert opened["meaning"]["kind"] == "report" and diag2cbor(opened["opened"]) == report
    misrouted = TapView(key).describe("tcu/v1/unit-0001/up/7", bytes.fromhex(vectors["sealed-report"]["hex"]))
    assert "does not authenticate" in misrouted["error"]  # bound to its topic
    command = TapView().describe("tcu/v1/unit-0001/down", bytes.fromhex(vectors["downlink-sign1"]["hex"]))
    assert (command["meaning"]["command"], command["meaning"]["counter"]) == ("track_stolen", 42)
    provisional = TapView().describe("tcu/v1/unit-0001/up/7", bytes.fromhex(vectors["command-provisional"]["hex"]))
    assert provisional["meaning"]["result"] == "provisional"  # the backend's view said "rejected"


def test_garbage_is_hex_and_a_reason_never_a_traceback() -> None:
    view = TapView()
    for topic, payload, why in (("tcu/v1/u/up/1", b"\xff\x00junk", "not CBOR"),
                                ("tcu/v1/u/up/1", b"", "not CBOR"),
                                ("tcu/v1/u/up/1", b"\x83\x01\x02\x03", "not a valid uplink"),
                                ("tcu/v1/u/status", bytes.fromhex("86090101011a6a05810001"), "not a valid status"),
                                ("tcu/v1/u/down", b"\x01", "not a valid command")):
        entry = view.describe(topic, payload)
        assert entry["hex"] == payload.hex() and entry["error"].startswith(why), entry
        assert "  hex: " in "\n".join(format_lines(entry))


@pytest.mark.parametrize("topic", ["$share/workers/tcu/v1/#", "tcu/#/up", "tcu/v1/a+", ""])
def test_a_bad_or_shared_filter_is_refused(topic: str) -> None:
    with pytest.raises(UsageError):
        check_filter(topic)


class Peer:
    """Everything the broker delivers on the unit's topics, as the tap should see it."""

    def __init__(self, url: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tap-peer-%d" % time.monotonic_ns())
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
        self.client.subscribe("tcu/v1/%s/#" % UNIT, qos=1)
        self.client.loop_start()
        assert ready.wait(5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_tap_shows_a_crash_replay_on_a_real_broker(mosquitto) -> None:
    tap = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "backend", "tap", "--broker", mosquitto.url,
                            "--topic", "tcu/v1/%s/#" % UNIT, "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peer = Peer(mosquitto.url)
    # a backend worker in a shared-subscription group beside the tap: the tap takes nothing from it
    backend = Backend(mosquitto.url, client_id="tap-worker-%d" % time.monotonic_ns(), persistent=False,
                      share="tap-test")
    try:
        assert tap.stderr is not None and "listening" in tap.stderr.readline()
        replay = tcu("replay", EXCERPT, "--trigger", "crash@2", "--broker", mosquitto.url, "--unit", UNIT, "--quiet")
        assert replay.returncode == 0, replay.stderr
        garbage = "tcu/v1/%s/up/999" % UNIT
        peer.publish(garbage, b"\xff\x00junk")
        assert wait_until(lambda: any(t == garbage for t, _ in peer.messages))
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(tap.stdout or []), daemon=True)
        reader.start()
        # the tap's last line, the garbage (an MSD's first decoding compiles the ASN.1: seconds when loaded)
        assert wait_until(lambda: any(garbage in line for line in lines), timeout=30)
        tap.send_signal(signal.SIGINT)
        tap.wait(10)
        reader.join(5)
        out, err = "".join(lines), tap.stderr.read() if tap.stderr else ""
        assert wait_until(lambda: any(r["type"] == "session_end" and r["unit"] == UNIT for r in backend.records))
        stored = sorted(r["seq"] for r in backend.records if r["unit"] == UNIT)
    finally:
        peer.close()
        backend.close()
        if tap.poll() is None:
            tap.kill()
            tap.wait(5)
    assert "Traceback" not in err
    entries = [json.loads(line) for line in out.splitlines()]
    assert [(e["topic"], e["bytes"]) for e in entries] == [(t, len(p)) for t, p in peer.messages], (err, out)
    for entry, (_, payload) in zip(entries[:-1], peer.messages[:-1], strict=True):
        assert diag2cbor(entry["diag"]) == payload  # the notation is the bytes, exactly
        assert entry["meaning"]["unit"] == UNIT
        if entry["meaning"]["kind"] == "report":
            msg = messages.decode(payload)
            assert msg.lat_e7 is not None
            assert (entry["meaning"]["lat"], entry["meaning"]["seq"]) == (msg.lat_e7 / 1e7, msg.seq)
    kinds = [e["meaning"]["kind"] for e in entries[:-1]]
    assert "session_start" in kinds and "report" in kinds and "session_end" in kinds
    assert entries[-1]["hex"] == "ff006a756e6b" and entries[-1]["error"].startswith("not CBOR")
    uplinks = [e for e in entries[:-1] if "/up/" in e["topic"]]
    assert stored == sorted(e["meaning"]["seq"] for e in uplinks) and stored  # every uplink reached the worker
