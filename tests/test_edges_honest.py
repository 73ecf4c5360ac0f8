"""Issue 18, honest results: a trigger that never fired, an interrupt, a recording stopped by
SIGTERM, and a trigger typed wrong each say what happened, in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tcu, wait_until
from mqtt_proxy import MqttProxy
from test_daemon import LiveGps

from tcu.emulator.replay import Replay, parse_trigger
from tcu.firmware.errors import UsageError
from tcu.firmware.fix import Fix
from tcu.firmware.unit import Unit

EXCERPT = str(Path(__file__).parent / "data" / "ublox-lea-4h-excerpt.log")
CLI = [sys.executable, "-m", "tcu.tools.cli"]


def test_a_trigger_after_the_end_of_the_trace_is_reported_and_fails_the_replay() -> None:
    late = tcu("replay", EXCERPT, "--trigger", "theft@0+1", "--trigger", "crash@300")
    assert late.returncode == 1 and "Traceback" not in late.stderr
    assert "crash@300 never fired: it starts after the end of the trace" in late.stderr
    assert "theft@0+1" not in late.stderr  # it fired
    allowed = tcu("replay", EXCERPT, "--trigger", "crash@300", "--allow-late")
    assert allowed.returncode == 0 and "crash@300 never fired" in allowed.stderr
    assert tcu("replay", EXCERPT, "--trigger", "theft@0").returncode == 0


def test_the_demo_does_not_announce_a_crash_that_never_happens() -> None:
    result = tcu("demo", "--trace", EXCERPT, "--trigger", "theft@0+1", "--trigger", "crash@400")
    assert result.returncode == 1, result.stderr
    assert "crash@400 never fired" in result.stdout


def test_replay_stats_list_late_windows() -> None:
    fixes = [Fix(time_ms=1_000_000 + 1000 * i, lat_e7=0, lon_e7=0) for i in range(10)]
    stats = Replay(Unit(), [parse_trigger("sos@2+3"), parse_trigger("theft@9"), parse_trigger("crash@9.5")],
                   lambda *a: None).run(fixes)
    assert [str(w) for w in stats.late] == ["crash@9.5"] and stats.span_s() == 9
    assert [str(w) for w in Replay(Unit(), [parse_trigger("sos@1")], lambda *a: None).run([]).late] == ["sos@1"]


@pytest.mark.parametrize("text, message", [
    ("crash@10+0", "a window of +0 s never holds the input"),
    ("CRASH@10", "trigger names are lower case (crash)"),
    ("stolen@5", "stolen-vehicle tracking is started only by a signed backend command"),
    ("lawful@5", "a lawful request is started only by a signed backend command"),
])
def test_a_mistyped_trigger_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        parse_trigger(text)


def test_record_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "kept.log"
    out.write_text("a recording\n")
    refused = tcu("record", EXCERPT, "-o", str(out))
    assert refused.returncode == 2 and "exists: give --force" in refused.stderr
    assert out.read_text() == "a recording\n"
    forced = tcu("record", EXCERPT, "-o", str(out), "--force")
    assert forced.returncode == 0 and "$GPRMC" in out.read_text()


def test_record_stopped_by_sigterm_prints_its_summary(tmp_path: Path) -> None:
    gps, out = LiveGps(), tmp_path / "live.log"
    proc = subprocess.Popen([*CLI, "record", gps.path, "--baud", "9600", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: out.exists() and b"$GPRMC" in out.read_bytes(), timeout=15)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        gps.close()
    assert proc.returncode == 0, err
    assert "tcu record: " in err and "valid sentences" in err and "Traceback" not in err


def test_an_interrupted_replay_says_what_is_still_in_its_outbox(mosquitto, tmp_path: Path) -> None:
    """The broker's PUBACKs never reach the replay (a proxy holds them): Ctrl-C names the
    pending uplinks. (Stopping the broker once the replay connected raced with a replay that
    delivered everything first on a loaded machine.)"""
    outbox = tmp_path / "outbox"
    trace = str(Path(__file__).resolve().parents[1] / "tools" / "data" / "demo-drive.log")
    proxy = MqttProxy(mosquitto.port)
    proxy.hold_acks()  # from the first PUBLISH on, everything stays in flight
    proc = subprocess.Popen([*CLI, "replay", trace, "--trigger", "theft@0", "--broker", proxy.url,
                             "--outbox", str(outbox), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the status message goes first on a connection: a second PUBLISH is an uplink
        assert wait_until(lambda: len(proxy.publishes()) >= 2, timeout=30), "the replay sent no uplink"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proxy.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, err
    assert "replay: interrupted: " in err and "Traceback" not in err
    assert "not yet acknowledged are kept in the outbox %s" % outbox in err, err


def test_the_tester_cli_takes_state_and_says_a_latched_crash_is_still_on(mosquitto, tmp_path: Path) -> None:
    gps, state = LiveGps(), tmp_path / "state"
    unit = subprocess.Popen([*CLI, "run", "--broker", mosquitto.url, "--gps", gps.path, "--baud", "9600",
                             "--state", str(state)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: (state / "control.sock").exists())
        assert tcu("status", "--state", str(state)).returncode == 0
        assert tcu("trigger", "crash", "--state", str(state)).returncode == 0
        cleared = tcu("trigger", "clear", "crash", "--state", str(state))
        assert cleared.returncode == 0 and "is latched: it runs to its time bound" in cleared.stdout, cleared
        assert "done" not in cleared.stdout
        assert tcu("reload", "--state", str(state)).returncode == 1  # no config file: refused, but reached
        both = tcu("status", "--state", str(state), "--control", str(state / "control.sock"))
        assert both.returncode == 2 and "not both" in both.stderr
    finally:
        unit.terminate()
        unit.wait(15)
        gps.close()
    alone = tcu("trigger", "clear")
    assert alone.returncode == 2 and "needs the trigger to clear: tcu trigger clear KIND" in alone.stderr
    usage = tcu("trigger", "--help").stdout
    assert usage.startswith("usage: tcu trigger [clear|cancel] KIND [--test] [--at WHEN] "
                            "[--control PATH | --state DIR]")
    assert "tcu trigger --script FILE | --unschedule [ID]" in usage  # scheduled triggers


def test_run_help_lists_every_input_spec_form() -> None:
    text = " ".join(tcu("run", "--help").stdout.split())
    for form in ("fifo:PATH", "file:PATH", "pty:PATH", "gpio:PIN=KIND[,cancel-hold=S]"):
        assert form in text


def test_a_bad_key_file_is_named_once_with_no_faq_link(tmp_path: Path) -> None:
    from tcu.emulator.crypto import load_e2e_key, load_private_key, load_public_key

    pem = tmp_path / "backend.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")
    for load, path in ((load_public_key, pem), (load_private_key, pem), (load_public_key, tmp_path),
                       (load_e2e_key, pem), (load_e2e_key, tmp_path / "missing")):
        with pytest.raises(UsageError) as err:
            load(path)  # type: ignore[operator]
        text = str(err.value)
        assert text.count(str(path)) == 1 and "http" not in text and "Errno" not in text, text


def test_audit_verify_on_a_file_that_is_not_an_audit_log_says_so() -> None:
    readme = str(Path(__file__).resolve().parents[1] / "README.md")
    result = tcu("audit", "verify", readme)
    assert result.returncode == 2 and "is not a tcu audit log" in result.stderr
    assert "Expecting value" not in result.stderr and "char 0" not in result.stderr


def test_doctor_names_the_process_holding_the_port_and_hints_when_there_are_none(tmp_path: Path) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    holder = subprocess.Popen(["sleep", "60"], stdin=open(path, "rb"))  # noqa: SIM115 - the child keeps it
    try:
        result = tcu("doctor", "--gps", path, "--baud", "9600", "--window", "0.3", "--json",
                     "--state", str(tmp_path / "state"))
    finally:
        holder.kill()
        holder.wait(5)
        os.close(master)
        os.close(slave)
    gps = next(line for line in result.stdout.splitlines() if '"check": "gps"' in line)
    assert "is held open by" in gps and "PID %d (" % holder.pid in gps, gps
    assert "check the cable" not in result.stdout
    none = subprocess.run([*CLI, "doctor", "--window", "0.1"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TCU_CONFIG": ""}, cwd=tmp_path)
    if "no serial ports found" in none.stderr:  # a machine with ports lists them instead
        assert none.returncode == 1 and "plug the receiver in" in none.stderr


def test_backend_keygen_e2e_writes_a_key_the_unit_and_backend_load(tmp_path: Path) -> None:
    from tcu.emulator.crypto import load_e2e_key

    made = tcu("backend", "keygen", "--e2e", "--out", str(tmp_path))
    assert made.returncode == 0, made.stderr
    key = tmp_path / "e2e.key"
    assert os.stat(key).st_mode & 0o777 == 0o600
    text = key.read_text()
    assert len(text) == 65 and text.endswith("\n") and len(load_e2e_key(key)) == 32
    again = tcu("backend", "keygen", "--e2e", "--out", str(tmp_path))
    assert again.returncode == 2 and "not overwriting" in again.stderr and key.read_text() == text
