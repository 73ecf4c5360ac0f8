"""Fault tests of the durable uplink against a real Mosquitto: the broker SIGKILLed and
restarted mid-session, the unit SIGKILLed at random points, a flooded outbox. Each prints
its figures (sent, delivered unique, duplicates, lost); they are repeated in the summary."""

from __future__ import annotations

import getpass
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import Mosquitto
from mqtt_proxy import MqttProxy
from wire_check import assert_valid

from tcu.emulator.link import DurableUplink
from tcu.emulator.outbox import Outbox, next_boot
from tcu.emulator.outbox_runner import crash_and_sos_uplinks
from tcu.emulator.replay import parse_trigger
from tcu.emulator.uplink import status_topic
from tcu.firmware.errors import LinkError
from tcu.protocol import messages
from tcu.tools import backend as backend_module
from tcu.tools.backend import BATCH_S, Backend
from tcu.tools.replay_cmd import replay_to_broker

DRAIN_BOUND_S = 2.0  # the issue: after the broker comes back the backlog starts draining within 2 s


def backend_for(url: str, tmp_path: Path, name: str) -> Backend:
    return Backend(url, client_id="%s-%d" % (name, time.monotonic_ns()), store=str(tmp_path / "backend.db"))


def wait_for_autosave(workdir: Path, since: float) -> None:
    """The broker saved its sessions (the backend's subscription) at least once since `since`."""
    db = workdir / "mosquitto.db"
    deadline = time.monotonic() + 10
    while not (db.exists() and db.stat().st_mtime >= since):
        assert time.monotonic() < deadline, "mosquitto never saved its database"
        time.sleep(0.05)


def kill_once_saved(broker: Mosquitto, proxy: MqttProxy) -> None:
    """SIGKILL the broker with the unit's latest publishes in flight, but only once it saved
    what it acknowledged: Mosquitto sends a PUBACK before its next save (every second), so a
    SIGKILL loses the messages it acknowledged since, with no unit at fault (a subscriber that
    acknowledges slowly leaves more of them queued in the broker). From the cut on, the unit
    learns of no acknowledgement; the save after it holds every one it did learn of."""
    proxy.cut_acks()
    wait_for_autosave(broker.config.parent, time.time())
    broker.stop(signal.SIGKILL)


@pytest.mark.parametrize("flush_s", [BATCH_S, 0.3], ids=["backend", "slow-backend"])
def test_broker_killed_and_restarted_during_a_crash_session_loses_nothing(
        fresh_mosquitto, tmp_path: Path, figures, monkeypatch: pytest.MonkeyPatch, flush_s: float) -> None:
    monkeypatch.setattr(backend_module, "BATCH_S", flush_s)  # slow: acknowledged to the broker late
    backend = backend_for(fresh_mosquitto.url, tmp_path, "backend-broker-kill")
    wait_for_autosave(fresh_mosquitto.config.parent, time.time())
    actions = crash_and_sos_uplinks(300)  # one crash session: start and 299 reports
    proxy = MqttProxy(fresh_mosquitto.port)
    try:
        with DurableUplink(proxy.url, "unit-bk", str(tmp_path / "outbox"), keepalive_s=2) as uplink:
            for i, action in enumerate(actions):
                uplink.send(action)  # an active session, reporting in bursts
                if i % 25 == 24:
                    time.sleep(0.05)
                if i == 101:  # right after a burst: some of it is in flight
                    kill_once_saved(fresh_mosquitto, proxy)
                elif i == 200:
                    fresh_mosquitto.start()
                    back_at = time.monotonic()
            uplink.drain(30)
            stats = uplink.stats
        assert backend.wait_for(len(actions), timeout_s=15), "backend has %d" % len(backend.records)
        time.sleep(0.2)
        unique = backend.stored()
        lost = len({a.seq for a in actions} - {seq for _, _, seq in backend.stored_keys()})
        figures("sent %d (%d publishes, %d of them again after the reconnect), delivered unique %d, "
                "duplicates %d (dropped by the backend), lost %d; %d connects, backlog draining %.2f s "
                "after the broker came back" % (
                    len(actions), stats.published, stats.backlog, unique, backend.duplicates, lost,
                    stats.connects, (stats.first_ack_at or 0) - back_at))
    finally:
        backend.close()
        proxy.close()
    assert lost == 0 and unique == len(actions)
    assert [r["seq"] for r in backend.records] == [a.seq for a in actions]  # in order, first arrivals
    assert stats.connects >= 2 and stats.first_ack_at is not None
    assert stats.first_ack_at - back_at < DRAIN_BOUND_S


def runner(outbox: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tcu.emulator.outbox_runner", "--outbox", str(outbox),
                             "--broker", url, "--unit", "unit-kill", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_unit_killed_at_50_random_points_delivers_1000_of_1000_once(
        fresh_mosquitto, tmp_path: Path, figures) -> None:
    backend = backend_for(fresh_mosquitto.url, tmp_path, "backend-unit-kill")
    outbox = tmp_path / "outbox"
    rng = random.Random(50)
    pending_at_kill: list[int] = []
    try:
        proc = runner(outbox, fresh_mosquitto.url, "--generate", "1000", "--rate", "100")
        assert proc.stdout is not None
        queued = proc.stdout.readline()
        assert queued.startswith("queued 1000 boot "), queued + (proc.stderr.read() if proc.stderr else "")
        boot = int(queued.split()[-1])
        for kill in range(50):
            if kill:
                proc = runner(outbox, fresh_mosquitto.url, "--rate", "100")
                assert proc.stdout is not None
            started = proc.stdout.readline()
            assert started.startswith("started pending "), started
            pending_at_kill.append(int(started.split()[2]))
            time.sleep(rng.uniform(0.0, 0.25))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        proc = runner(outbox, fresh_mosquitto.url)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        left = int(out.split("started pending ")[1].split()[0])
        assert backend.wait_for(1000, timeout_s=15), "backend has %d" % len(backend.records)
        time.sleep(0.2)
        keys = backend.stored_keys()
    finally:
        backend.close()
    received = len(keys) + backend.duplicates
    figures("1000 crash/SOS reports queued; unit SIGKILLed 50 times (pending at each restart: %d..%d, %d left "
            "for the last run); backend received %d, delivered unique %d, duplicates %d (dropped by dedupe), "
            "lost %d" % (min(pending_at_kill[1:]), max(pending_at_kill), left, received, len(keys),
                         backend.duplicates, 1000 - len(keys)))
    assert keys == [("unit-kill", boot, seq) for seq in range(1, 1001)]  # stored in arrival order
    assert min(pending_at_kill) > 0, "some kills happened with nothing queued"
    assert not Outbox(outbox).pending()


def test_a_flooded_outbox_still_delivers_every_crash_and_sos_report(
        mosquitto, tmp_path: Path, figures) -> None:
    path = tmp_path / "outbox"
    box = Outbox(path, max_records=200)
    boot = next_boot(path)
    crash = crash_and_sos_uplinks(100)
    for i in range(20_000):  # crash and SOS reports arrive into an outbox full of lower priorities
        box.put(boot, 200_000 + i, 1 + i % 2, True, messages.encode_report(200_000 + i, 9, 3, i, 1, 1))
        if i % 200 == 0:
            action = crash[i // 200]
            box.put(boot, action.seq, action.priority, action.located, action.payload)
    box.close()
    evicted = box.stats.evicted_total
    backend = backend_for(mosquitto.url, tmp_path, "backend-flood")
    try:
        with DurableUplink(mosquitto.url, "unit-flood", str(path), max_records=200) as uplink:
            assert len(uplink.outbox) == 200
            uplink.drain(30)
        assert backend.wait_for(200, timeout_s=10)
        got = {r["seq"] for r in backend.records}
    finally:
        backend.close()
    delivered_crash = sum(a.seq in got for a in crash)
    figures("outbox of 200 flooded with 20,000 low-priority uplinks and 100 crash/SOS: %d evicted, "
            "crash/SOS delivered %d of 100, evicted 0" % (evicted, delivered_crash))
    assert delivered_crash == 100 and box.stats.evicted.get(0, 0) == 0


def test_after_delivery_no_position_remains_in_the_outbox_file(mosquitto, traces, tmp_path: Path) -> None:
    backend = backend_for(mosquitto.url, tmp_path, "backend-privacy")
    path = tmp_path / "outbox"
    try:
        result = replay_to_broker(str(traces / "quectel-l76k-dual.log"), [parse_trigger("crash@5")],
                                  mosquitto.url, "unit-privacy", outbox=str(path))
        assert backend.wait_for(result.replay.uplinks, timeout_s=10)
        delivered = [payload for _, _, payload in backend.store.uplinks()]
    finally:
        backend.close()
    # What carries a position: the reports, and the crash session's start with its eCall MSD.
    payloads = [p for p in delivered if (m := messages.decode(p)).type == messages.T_REPORT or m.msd is not None]
    assert result.replay.located >= 30 and len(payloads) == result.replay.located
    content = b"".join(p.read_bytes() for p in tmp_path.glob("outbox*"))
    assert not any(payload in content for payload in payloads)
    assert path.stat().st_size == 0


def test_status_is_online_while_connected_and_offline_after(mosquitto, tmp_path: Path) -> None:
    seen: list[bytes] = []
    got = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="status-%d" % time.monotonic_ns())
    client.on_message = lambda c, u, m: (seen.append(bytes(m.payload)), got.set()) and None
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe(status_topic("unit-status"), qos=1)
    client.loop_start()
    try:
        with DurableUplink(mosquitto.url, "unit-status", str(tmp_path / "outbox")):
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                got.wait(0.1)
        deadline = time.monotonic() + 5
        online_bit = messages.STATE_ONLINE
        while (not seen or (messages.decode(seen[-1]).state or 0) & online_bit) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    online = [(messages.decode(payload).state or 0) & ~(messages.STATE_TIME_NTP | messages.STATE_TIME_TRUSTED)
              for payload in seen]  # the time bits say only that the status's time is the system clock's
    assert online[0] == messages.STATE_ONLINE and online[-1] == 0  # online, then offline
    for payload in seen:
        assert_valid(payload)  # a status message: time and state, never a position


def test_a_broker_that_refuses_a_publish_is_not_delivery(tmp_path: Path) -> None:
    # a broker with an ACL: MQTT 5 PUBACK 0x87 for this unit
    broker = Mosquitto(tmp_path)
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite tcu/v1/allowed/#\ntopic readwrite tcu/v1/denied/status\n")
    broker.config.write_text(broker.config.read_text() + "acl_file %s\nuser %s\n" % (acl, getpass.getuser()))
    try:
        broker.start()
        # window 1: Mosquitto 2.0.11 drops the connection after a refusal, and a reset
        # connection loses a PUBACK still unread behind other packets
        with DurableUplink(broker.url, "denied", str(tmp_path / "outbox"), window=1) as uplink:
            for action in crash_and_sos_uplinks(3):
                uplink.send(action)
            with pytest.raises(LinkError, match="refused .*Not authorized"):
                uplink.drain(3)
            assert len(uplink.outbox) == 3 and uplink.stats.refused >= 1 and uplink.stats.acked == 0
    finally:
        broker.stop()
    assert len(Outbox(tmp_path / "outbox").pending()) == 3


def test_replay_sends_what_an_earlier_run_left_in_its_outbox_first(mosquitto, traces, tmp_path: Path) -> None:
    path = tmp_path / "outbox"
    box = Outbox(path)
    boot = next_boot(path)
    left = crash_and_sos_uplinks(20)
    for action in left:
        box.put(boot, action.seq, action.priority, action.located, action.payload)
    box.commit()
    box.close()  # as a run killed before the broker acknowledged them would leave it
    backend = backend_for(mosquitto.url, tmp_path, "backend-leftover")
    try:
        result = subprocess.run([sys.executable, "-m", "tcu.tools.cli", "replay", str(traces / "quectel-l76k-dual.log"),
                                 "--trigger", "roadside@3", "--broker", mosquitto.url, "--unit", "unit-leftover",
                                 "--outbox", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert backend.wait_for(23, timeout_s=10)
        keys = backend.stored_keys()
    finally:
        backend.close()
    assert "20 sent from the outbox's backlog" in result.stderr
    assert keys[:20] == [("unit-leftover", boot, seq) for seq in range(1, 21)]
    assert [k[1] for k in keys[20:]] == [boot + 1] * 3 and path.stat().st_size == 0
