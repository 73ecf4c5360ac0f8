"""End to end: a recorded trace through `tcu replay` to a real Mosquitto, read back by an
independent paho subscriber and a standard CBOR decoder."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
import pynmea2
import pytest
from test_daemon import wait_until
from wire_check import assert_valid

from tcu.protocol import messages
from tcu.tools.backend import Backend

TRACE = "quectel-l76k-dual.log"  # 130 s at 1 Hz, NMEA with binary frames between


def tcu(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tcu.tools.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


class Subscriber:
    """A separate paho client that collects every uplink payload."""

    def __init__(self, url: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        self.payloads: list[bytes] = []
        self.ready = threading.Event()
        client_id = "test-subscriber-%d" % time.monotonic_ns()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = lambda c, u, m: self.payloads.append(bytes(m.payload))
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("tcu/v1/+/up/#", qos=1)
        self.client.loop_start()
        assert self.ready.wait(5)

    def collect(self, count: int, timeout: float = 10) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.payloads) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # anything beyond count would be a bug: give it a chance to arrive
        self.client.disconnect()
        self.client.loop_stop()
        for payload in self.payloads:  # everything the unit sent conforms to protocol/tcu.cddl
            assert_valid(payload, "sealed-uplink" if payload[:1] == b"\xd0" else "uplink")
        return self.payloads


def trace_positions(path: Path) -> dict[int, set[tuple[int, int]]]:
    """Unix second -> positions (1e-7 degree) in the trace's valid RMC, GGA and GLL sentences,
    read by pynmea2 alone. GGA and GLL carry no date: they take the last RMC's."""
    positions: dict[int, set[tuple[int, int]]] = {}
    date: Any = None
    for raw in path.read_bytes().splitlines():
        line = raw.decode("ascii", "replace")
        if not line.startswith("$") or line[3:6] not in ("RMC", "GGA", "GLL"):
            continue
        try:
            msg: Any = pynmea2.parse(line, check=True)  # pynmea2 has no annotations
        except pynmea2.ParseError:
            continue
        if isinstance(msg, pynmea2.RMC) and msg.datestamp:
            date = msg.datestamp
        valid = {"RMC": lambda m: m.status == "A", "GGA": lambda m: m.gps_qual not in (None, 0, "0", ""),
                 "GLL": lambda m: m.status == "A"}[line[3:6]](msg)
        if not valid or date is None or not msg.lat or msg.timestamp is None:
            continue
        when = datetime.combine(date, msg.timestamp).replace(tzinfo=UTC)  # pyright: ignore[reportArgumentType]
        positions.setdefault(int(when.timestamp()), set()).add(
            (round(msg.latitude * 1e7), round(msg.longitude * 1e7)))
    return positions


def test_located_reports_only_inside_the_trigger_window(mosquitto, traces, tmp_path) -> None:
    trace = traces / TRACE
    positions = trace_positions(trace)
    t0 = min(positions)
    sub = Subscriber(mosquitto.url)
    jsonl = tmp_path / "uplinks.jsonl"
    result = tcu("replay", str(trace), "--trigger", "theft@20+60", "--broker", mosquitto.url, "--jsonl", str(jsonl))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    payloads = sub.collect(len(lines))
    assert len(payloads) == len(lines) >= 3

    sessions: dict[int, int] = {}
    located = 0
    for payload in payloads:
        items = cbor2.loads(payload)  # a standard decoder, not ours
        head, sid = items[0], items[2]
        assert head // 8 == messages.VERSION
        if head % 8 == messages.T_SESSION_START:
            sessions[sid] = items[4]
        elif head % 8 == messages.T_REPORT:
            located += 1
            when = sessions[sid] + items[4]
            assert t0 + 19 <= when <= t0 + 80, "report at +%d s is outside theft@20+60" % (when - t0)
            assert (items[5], items[6]) in positions[when]
    assert located >= 5
    assert [d["seq"] for d in lines] == [cbor2.loads(p)[1] for p in payloads]
    assert all({"type", "seq", "trigger", "bytes"} <= d.keys() for d in lines)
    assert all({"time", "lat", "lon"} <= d.keys() for d in lines if d["type"] == "report")
    assert [d["bytes"] for d in lines] == [len(p) for p in payloads]


def test_no_trigger_sends_no_located_report(mosquitto, traces) -> None:
    sub = Subscriber(mosquitto.url)
    result = tcu("replay", str(traces / TRACE), "--broker", mosquitto.url)
    assert result.returncode == 0, result.stderr
    assert "0 uplinks" in result.stderr
    assert sub.collect(1, timeout=1) == []


def test_the_embedded_broker_needs_nothing_installed(traces) -> None:
    result = tcu("replay", str(traces / TRACE), "--trigger", "crash@5", "--jsonl", "-")
    assert result.returncode == 0, result.stderr
    uplinks = [json.loads(line) for line in result.stdout.splitlines()]
    assert uplinks[0]["type"] == "session_start" and uplinks[0]["trigger"] == "crash"
    assert any(u["type"] == "report" for u in uplinks) and "(embedded)" in result.stderr


def test_backend_prints_every_uplink(mosquitto, traces) -> None:
    backend = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "backend", "--broker", mosquitto.url,
                                "--json", "--count", "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert backend.stderr is not None and "subscribed" in backend.stderr.readline()
        result = tcu("replay", str(traces / TRACE), "--trigger", "roadside@3", "--trigger", "assist@6",
                     "--broker", mosquitto.url)
        assert result.returncode == 0, result.stderr
        out, _ = backend.communicate(timeout=20)
    finally:
        if backend.poll() is None:
            backend.kill()
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["type"], r["trigger"]) for r in records] == [
        ("session_start", "roadside"), ("report", "roadside"), ("session_end", "roadside"),
        ("session_start", "assist"), ("report", "assist"), ("session_end", "assist")]
    assert records[1]["purpose"] == "roadside_assistance" and "speed" not in records[1]


@pytest.mark.parametrize("args, message", [
    (["replay", "/nonexistent/trace.log"], "/nonexistent/trace.log"),
    (["replay", "TRACE", "--trigger", "crash"], "KIND@START[+DURATION]"),
    (["replay", "TRACE", "--trigger", "airbag@10"], "unknown trigger 'airbag'"),
    (["replay", "TRACE", "--trigger", "theft@-5"], "KIND@START[+DURATION]"),
    (["replay", "TRACE", "--broker", "http://127.0.0.1:1"], "mqtt://HOST"),
])
def test_bad_input_gets_a_clear_error(traces, args, message) -> None:
    result = tcu(*[str(traces / TRACE) if a == "TRACE" else a for a in args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_broker_that_refuses_or_never_answers_is_an_error(traces) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_url = "mqtt://127.0.0.1:%d" % closed.getsockname()[1]
    result = tcu("replay", str(traces / TRACE), "--trigger", "crash@1", "--broker", refused_url)
    assert result.returncode == 2 and "did not answer" in result.stderr and "Traceback" not in result.stderr

    with socket.socket() as silent:  # accepts TCP, never sends CONNACK
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        result = tcu("replay", str(traces / TRACE), "--broker", "mqtt://127.0.0.1:%d" % silent.getsockname()[1])
    assert result.returncode == 2 and "refused the connection" in result.stderr and "Traceback" not in result.stderr


def test_demo_shows_no_location_before_the_first_trigger() -> None:
    result = tcu("demo", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first_on = next(i for i, line in enumerate(lines) if "privacy indicator ON" in line)
    assert not any(" report " in line for line in lines[:first_on])
    assert "dormant for" in lines[first_on - 1] and "no position decoded" in lines[first_on - 1]
    assert sum(" report " in line for line in lines) >= 6
    assert "all received by the backend" in lines[-1]
    # the crash session carries its eCall MSD as `tcu run` and `tcu replay` do; theft none
    msd = [line for line in lines if "eCall MSD" in line]
    assert len(msd) == 1 and "crash_notification  eCall MSD #1, automatic activation" in msd[0], msd


def test_demo_of_a_trace_without_fixes_is_a_clear_error(tmp_path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"$GPTXT,01,01,02,ANTSTATUS=OK*3B\r\n")
    result = tcu("demo", "--trace", str(empty), timeout=60)
    assert result.returncode == 2 and "has no fixes" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_sealed_location_is_opened_only_by_the_backend_with_the_key(mosquitto, traces, tmp_path) -> None:
    key_file = tmp_path / "e2e.key"
    key_file.write_text(bytes(range(32)).hex() + "\n")
    sub = Subscriber(mosquitto.url)
    keyless = Backend(mosquitto.url, client_id="keyless-%d" % time.monotonic_ns(), persistent=False)
    backend = Backend(mosquitto.url, client_id="e2e-%d" % time.monotonic_ns(), persistent=False,
                      e2e_key=bytes(range(32)))
    try:
        result = tcu("replay", str(traces / TRACE), "--trigger", "theft@5+40", "--broker", mosquitto.url,
                     "--e2e-key", str(key_file))
        assert result.returncode == 0, result.stderr
        payloads = sub.collect(7)
        sealed = [p for p in payloads if p[:1] == b"\xd0"]
        assert len(sealed) >= 4 and len(payloads) == len(sealed) + 2  # the start and end stay readable
        assert backend.wait_for(len(payloads))
        reports = [r for r in backend.records if r["type"] == "report"]
        assert len(reports) == len(sealed) and all("lat" in r for r in reports)
        # without the key: counted (and said once), neither shown nor rejected as malformed
        assert keyless.wait_for(2) and wait_until(lambda: keyless.sealed_unopened == len(sealed))
        assert keyless.rejected == []
    finally:
        backend.close()
        keyless.close()


@pytest.mark.parametrize("url", ["mqtt://[::1", "mqtt://h:99999", "http://h", "mqtt://"])
def test_a_bad_broker_url_is_one_clear_line(url: str) -> None:
    from tcu.emulator.uplink import parse_broker_url
    from tcu.firmware.errors import UsageError

    with pytest.raises(UsageError, match="--broker"):
        parse_broker_url(url)
