"""Backend workers sharing the uplinks through an MQTT 5 shared subscription on a real
Mosquitto, storing into a real PostgreSQL: one worker is SIGKILLed mid-stream and restarted
with its client id (its persistent session holds what was in flight to it): every uplink is
stored exactly once, none lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import Mosquitto
from postgres import Postgres, postgres  # noqa: F401 - the fixture

from tcu.emulator.uplink import uplink_topic
from tcu.protocol import messages
from tcu.tools.store import open_store

TCU = [sys.executable, "-m", "tcu.tools.cli"]
UNITS, PER_UNIT = 10, 400


def worker(broker: str, store: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*TCU, "backend", "--broker", broker, "--store", store, "--share", "ingest",
                             "--client-id", name, "--json"], stdout=subprocess.DEVNULL,
                            stderr=open(log, "ab"))  # noqa: SIM115 - the child owns it


def wait_count(store: str, count: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    db = open_store(store)
    try:
        while True:
            stored = db.count()
            if stored >= count or time.monotonic() > deadline:
                return stored
            time.sleep(0.1)
    finally:
        db.close()


def publish_all(broker: Mosquitto, pace_per_s: float) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="share-pub", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        infos = []
        start = time.monotonic()
        for i in range(PER_UNIT):
            for u in range(UNITS):
                payload = messages.encode_session_start(i + 1, 1, 1, 1_700_000_000 + i, 1, None)
                infos.append(client.publish(uplink_topic("share-%d" % u, 3), payload, qos=1))
            lag = start + (i + 1) * UNITS / pace_per_s - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_two_workers_one_killed_mid_stream_store_every_uplink_once(
        mosquitto: Mosquitto, postgres: Postgres, tmp_path: Path, figures) -> None:  # noqa: F811
    store = postgres.new_database("share")
    total = UNITS * PER_UNIT
    log = tmp_path / "workers.log"
    workers = {name: worker(mosquitto.url, store, name, log) for name in ("w1", "w2")}
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("backend: subscribed") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # both subscribed (each opens the store, then connects)
        import threading

        sender = threading.Thread(target=publish_all, args=(mosquitto, 1500.0))
        sender.start()
        assert wait_count(store, total // 3, 30) >= total // 3
        os.kill(workers["w1"].pid, signal.SIGKILL)  # mid-stream: rows committed, PUBACKs not all sent
        workers["w1"].wait(5)
        killed_at = wait_count(store, 0, 0)
        time.sleep(1.0)
        workers["w1"] = worker(mosquitto.url, store, "w1", log)  # the same client id: its session
        sender.join(60)
        stored = wait_count(store, total, 30)
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    db = open_store(store)
    keys = db.keys()
    by_worker = db.by_worker()
    db.close()
    expected = {("share-%d" % u, 3, i + 1) for u in range(UNITS) for i in range(PER_UNIT)}
    redelivered = sum(int(line.split()[1]) for line in log.read_text().splitlines()
                      if line.startswith("backend: ") and line.endswith("duplicates dropped"))
    figures("sent %d, stored %d (w1 killed at %d stored), by worker %s, lost %d, duplicate rows %d, "
            "redelivered duplicates dropped %d" % (total, stored, killed_at, by_worker, len(expected - set(keys)),
                                                   len(keys) - len(set(keys)), redelivered))
    assert set(keys) == expected and len(keys) == total  # 0 lost, 0 duplicates
    assert by_worker.get("w1", 0) > 0 and by_worker.get("w2", 0) > 0  # both shared the load
    assert "Traceback" not in log.read_text()


def test_share_needs_a_client_id_per_worker() -> None:
    result = subprocess.run([*TCU, "backend", "--broker", "mqtt://127.0.0.1:1", "--share", "g"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--share needs --client-id NAME" in result.stderr


@pytest.mark.parametrize("share", ["a/b", "+", ""])
def test_a_share_group_that_is_not_one_topic_level_is_refused(share: str) -> None:
    result = subprocess.run([*TCU, "backend", "--broker", "mqtt://127.0.0.1:1", "--share", share,
                             "--client-id", "w"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--share" in result.stderr and len(result.stderr.splitlines()) == 1
