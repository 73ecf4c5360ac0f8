"""Issue 18, the backend's honesty: gaps in a unit's seq said live and at the end, sealed
uplinks without a key counted, --count exact without taking the next run's messages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from helpers import tcu, wait_until

from tcu.emulator.crypto import seal_uplink
from tcu.emulator.uplink import uplink_topic
from tcu.protocol import messages
from tcu.tools.backend import Backend
from tcu.tools.seq_gaps import SeqGaps

DEMO = str(Path(__file__).resolve().parents[1] / "tools" / "data" / "demo-drive.log")
CLI = [sys.executable, "-m", "tcu.tools.cli"]


def publish(url: str, items: list[tuple[str, bytes]]) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edges-pub-%d" % time.monotonic_ns())
    client.connect(host, int(port))
    client.loop_start()
    try:
        for topic, payload in items:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_seq_gaps_are_ranges_that_late_arrivals_fill() -> None:
    gaps = SeqGaps()
    assert [gaps.add("u", 1, s) for s in (1, 2, 6)] == [None, None, (3, 5)]
    assert gaps.add("u", 1, 4) is None and gaps.missing("u", 1) == [(3, 3), (5, 5)]
    assert gaps.add("u", 2, 2_000_000_000) == (1, 1_999_999_999)  # two integers, not a set
    assert gaps.add("v", 1, 1) is None and ("v", 1) not in gaps.all()


def test_the_backend_says_a_gap_and_counts_sealed_uplinks_without_a_key(mosquitto) -> None:
    notes: list[str] = []
    backend = Backend(mosquitto.url, client_id="edges-gap-%d" % time.monotonic_ns(), persistent=False,
                      on_note=notes.append)
    unit, topic = "edge-unit", uplink_topic("edge-unit", 7)
    now = int(time.time())
    try:
        sealed = seal_uplink(messages.encode_session_end(4, 1, now, 1), bytes(32), topic)
        publish(mosquitto.url, [(topic, messages.encode_session_start(1, 1, 2, now, 2)),
                                (topic, messages.encode_session_end(2, 1, now, 1)),
                                (topic, sealed), (topic, sealed),
                                (topic, messages.encode_session_end(6, 2, now, 1))])
        assert backend.wait_for(3, timeout_s=10)
        assert wait_until(lambda: backend.sealed_unopened == 2)
        assert backend.gaps.missing(unit, 7) == [(3, 5)]
        assert any("unit edge-unit boot 7: seq 3-5 missing (3 uplinks" in n for n in notes), notes
        assert sum("sealed uplink from edge-unit and no --e2e-key" in n for n in notes) == 1, notes
        assert backend.rejected == []
    finally:
        backend.close()


def test_count_is_exact_and_leaves_the_rest_to_the_next_run(mosquitto, tmp_path: Path) -> None:
    client_id = "edges-count-%d" % os.getpid()
    first = subprocess.Popen([*CLI, "backend", "--broker", mosquitto.url, "--count", "3", "--json",
                              "--client-id", client_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        assert "subscribed" in first.stderr.readline()
        replay = tcu("replay", DEMO, "--trigger", "theft@0+30", "--unit", "count-unit", "--broker", mosquitto.url)
        assert replay.returncode == 0, replay.stderr
        total = int(re.search(r"(\d+) uplinks \(", replay.stderr).group(1))  # type: ignore[union-attr]
        out, _ = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(5)
    assert first.returncode == 0
    lines = out.splitlines()
    assert len(lines) == 3, out
    seen = [int(re.search(r'"seq": (\d+)', line).group(1)) for line in lines]  # type: ignore[union-attr]
    second = subprocess.run([*CLI, "backend", "--broker", mosquitto.url, "--count", str(total - 3), "--json",
                             "--client-id", client_id], capture_output=True, text=True, timeout=30)
    assert second.returncode == 0, second.stderr
    rest = [int(re.search(r'"seq": (\d+)', line).group(1))  # type: ignore[union-attr]
            for line in second.stdout.splitlines()]
    assert sorted(seen + rest) == list(range(1, total + 1)), (seen, rest)


def test_backend_sessions_shows_gaps_and_sessions_with_no_start(tmp_path: Path) -> None:
    import json
    import sqlite3

    from tcu.tools.backend import SCHEMA

    store = tmp_path / "store.db"
    db = sqlite3.connect(store)
    db.execute(SCHEMA)
    now = int(time.time())
    rows = [(1, "session_start", 1, messages.encode_session_start(1, 1, 2, now, 2)),
            (2, "session_end", 1, messages.encode_session_end(2, 1, now + 5, 1)),
            (6, "session_end", 2, messages.encode_session_end(6, 2, now + 9, 1))]  # 3-5 lost: 2's start too
    db.executemany("INSERT INTO uplinks VALUES ('u1', 4, ?, ?, ?, ?, 0)", rows)
    db.commit()
    db.close()
    text = tcu("backend", "sessions", "--store", str(store))
    assert text.returncode == 0, text.stderr
    assert "gap: unit u1 boot 4: 3 uplinks missing from the store (seq 3-5)" in text.stdout
    assert "no start: u1/4/2" in text.stdout
    listed = tcu("backend", "sessions", "--store", str(store), "--json").stdout
    objects = [json.loads(line) for line in listed.splitlines()]
    assert sorted((o["session"], o["state"], o["missing_seq"]) for o in objects) == [
        (1, "ended (trigger_cleared)", [[3, 5]]), (2, "ended (trigger_cleared)", [[3, 5]])]


def test_backend_lines_name_the_unit_a_late_joiners_times_and_purposes_and_command_results(mosquitto) -> None:
    from tcu.tools.backend import format_record

    backend = Backend(mosquitto.url, client_id="edges-lines-%d" % time.monotonic_ns(), persistent=False)
    topic_a, topic_b = uplink_topic("unit-a", 3), uplink_topic("unit-b", 3)
    try:  # joined late: session 1's start was never seen
        publish(mosquitto.url, [(topic_a, messages.encode_report(5, 1, 2, 12, 481374300, 115754900)),
                                (topic_a, messages.encode_session_end(6, 1, int(time.time()), 1)),
                                (topic_b, messages.encode_command_response(1, 77, messages.RESULT_REJECTED, 7)),
                                (topic_b, messages.encode_command_response(2, 78, messages.RESULT_ACCEPTED, 1))])
        assert backend.wait_for(4, timeout_s=10)
        lines = [format_record(r) for r in backend.records]
    finally:
        backend.close()
    assert lines[0].startswith("unit-a ~20") and "theft_tracking" in lines[0] and "?" not in lines[0]
    assert lines[1].startswith("unit-a 20") and "theft_tracking" in lines[1] and "(trigger_cleared)" in lines[1]
    assert lines[2].startswith("unit-b ") and "command 77 rejected (replayed)" in lines[2]
    assert "command 78 accepted" in lines[3]
