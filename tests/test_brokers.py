"""A link every broker accepts: `tcu replay` with crash and theft sessions (located uplinks
sealed end to end) against Mosquitto in seven configurations, amqtt and aedes. Each either
delivers every uplink exactly once after the backend's dedupe, or stops with one line that
names the broker's limit. Plus credentials: from the URL (percent-encoded), a password file,
refused when others can read it, never shown."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from brokers import MOSQUITTO, PASSWORD, USER, aedes, auth_files, mosquitto
from helpers import tcu

from tcu.emulator.broker import EmbeddedBroker
from tcu.emulator.credentials import Credentials
from tcu.emulator.uplink import redact_url
from tcu.tools.backend import Backend

TRACE = "quectel-l76k-dual.log"  # 130 s at 1 Hz
KEY_HEX = bytes(range(32)).hex()


@contextmanager
def broker_for(name: str, workdir: Path) -> Iterator[tuple[str, str, Credentials | None]]:
    """(unit URL, outcome, the backend's credentials) of a broker started for this test."""
    if name == "amqtt":
        with EmbeddedBroker() as embedded:
            yield embedded.url, "ok", None
    elif name == "aedes":
        with aedes() as url:
            yield url, "ok", None
    else:
        extra, outcome = MOSQUITTO[name]
        auth = name == "password_acl"
        with mosquitto(workdir, extra + (auth_files(workdir) if auth else "")) as broker:
            url = broker.url.replace("//", "//%s:%s@" % (quote(USER, safe=""), quote(PASSWORD, safe=""))) if auth \
                else broker.url
            yield url, outcome, Credentials("backend", b"backend-pw") if auth else None


@pytest.mark.parametrize("name", [*MOSQUITTO, "amqtt", "aedes"])
def test_replay_delivers_everything_once_or_names_the_brokers_limit(name, traces, tmp_path: Path, figures) -> None:
    key = tmp_path / "e2e.key"
    key.write_text(KEY_HEX)
    os.chmod(key, 0o600)
    unit = USER if name == "password_acl" else "unit-%04d" % (list(MOSQUITTO).index(name) if name in MOSQUITTO else 99)
    with ExitStack() as stack:
        url, outcome, backend_auth = stack.enter_context(broker_for(name, tmp_path))
        backend = Backend(redact_url(url), client_id="backend-%d" % time.monotonic_ns(), e2e_key=bytes(range(32)),
                          auth=backend_auth)
        stack.callback(backend.close)
        began = time.monotonic()
        result = tcu("replay", str(traces / TRACE), "--trigger", "crash@5", "--trigger", "theft@20+60",
                     "--broker", url, "--unit", unit, "--e2e-key", str(key), "--outbox", str(tmp_path / "outbox"))
        took = time.monotonic() - began
        assert PASSWORD not in result.stderr + result.stdout and quote(PASSWORD, safe="") not in result.stderr
        if outcome != "ok":
            lines = result.stderr.strip().splitlines()
            figures("%s: stopped after %.1f s: %s" % (name, took, lines[-1] if lines else ""))
            assert result.returncode == 2 and len(lines) == 1 and outcome in lines[0], result.stderr
            assert "Traceback" not in result.stderr
            return
        assert result.returncode == 0, result.stderr
        uplinks = int(result.stderr.split(" uplinks (")[0].rsplit(" ", 1)[1])
        located = int(result.stderr.split(" uplinks (")[1].split()[0])
        assert backend.wait_for(uplinks, timeout_s=15), "backend has %d of %d" % (len(backend.records), uplinks)
        time.sleep(0.2)
        keys = backend.stored_keys()
    # located: reports, batches, and (issue 15) a crash session start carrying its eCall MSD
    reports = [r for r in backend.records if r["type"] in ("report", "batch") or "msd" in r]
    figures("%s: %d uplinks (%d located) in %.1f s, delivered unique %d, duplicates %d" % (
        name, uplinks, located, took, len(keys), backend.duplicates))
    assert located >= 50 and len(reports) == located and not backend.rejected
    assert len(keys) == len(set(keys)) == uplinks  # every one, once


def test_a_password_file_others_can_read_is_refused_and_no_password_is_ever_shown(tmp_path: Path) -> None:
    with mosquitto(tmp_path, auth_files(tmp_path)) as broker:
        pw = tmp_path / "unit.pw"
        pw.write_text(PASSWORD + "\n")
        os.chmod(pw, 0o644)
        args = ("replay", str(Path(__file__).parent.parent / "tools" / "data" / "demo-drive.log"), "--trigger",
                "sos@1+5", "--broker", broker.url, "--unit", USER, "--username", USER, "--password-file", str(pw))
        loose = tcu(*args)
        assert loose.returncode == 2 and "others may read it" in loose.stderr and "chmod 600" in loose.stderr
        os.chmod(pw, 0o600)
        good = tcu(*args)
        assert good.returncode == 0, good.stderr
        pw.write_text("wrong\n")
        wrong = tcu(*args)
        # Mosquitto 2.0 answers a wrong password with 0x87 Not authorized (0x86 would be as right)
        assert wrong.returncode == 2 and "refused the connection: CONNACK 0x87 Not authorized" in wrong.stderr
        assert "wrong" not in wrong.stderr
        url = broker.url.replace("//", "//%s:%s@" % (USER, quote("secret-in-url", safe="")))
        in_url = tcu("replay", args[1], "--broker", url, "--unit", USER)
        assert in_url.returncode == 2 and "0x87" in in_url.stderr and "secret-in-url" not in in_url.stderr
        doctor = tcu("doctor", "--broker", url, "--gps", args[1], "--state", str(tmp_path / "state"))
        assert "0x87" in doctor.stdout + doctor.stderr and "secret-in-url" not in doctor.stdout + doctor.stderr
    assert repr(Credentials(USER, PASSWORD.encode())).count(PASSWORD) == 0


@pytest.mark.parametrize("extra, level, text", [
    ("max_qos 0\n", "FAIL", "accepts QoS 0 only"),
    ("max_packet_size 80\n", "warn", "Maximum Packet Size 80"),
    ("max_inflight_messages 3\n", "ok", "Receive Maximum 3"),
])
def test_doctor_reports_what_the_broker_announces(extra, level, text, tmp_path: Path) -> None:
    from tcu.emulator.config import Config
    from tcu.tools.doctor_checks import check_broker

    with mosquitto(tmp_path, extra) as broker:
        findings = {f.check: f for f in check_broker(Config(broker=broker.url))}
    assert findings["mqtt"].level == level and text in findings["mqtt"].detail, findings["mqtt"]
