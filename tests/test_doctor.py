"""`tcu doctor` on a whole setup: a pty receiver, a real Mosquitto (plain and mutual TLS), key
files, state directories and a control socket; each check one ok / warn / FAIL line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import make_pki
from test_tls import TlsMosquitto

from tcu.hal.framer import nmea_checksum
from tcu.tools.cli import main
from tcu.tools.doctor_checks import check_clock

EPOCH = b"".join(b"$%s*%02X\r\n" % (body, nmea_checksum(body)) for body in (
    b"GPRMC,120000.00,A,4807.03800,N,01131.00000,E,0.0,0.0,010126,,,A",
    b"GPGGA,120000.00,4807.03800,N,01131.00000,E,1,09,0.9,519.0,M,46.5,M,,"))


class PtyReceiver:
    """A receiver on a pty sending an epoch with a fix ten times a second."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                os.write(self.master, EPOCH)
            except BlockingIOError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def receiver() -> Iterator[PtyReceiver]:
    gps = PtyReceiver()
    yield gps
    gps.close()


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    """Exit status and {check: finding} of `tcu doctor --json ...` (the last finding of each check)."""
    capsys.readouterr()
    status = main(["doctor", "--json", "--window", "0.3", *args])
    findings = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return status, {f["check"]: f for f in findings}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_working_setup_passes(mosquitto, receiver: PtyReceiver, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    status, found = doctor(capsys, "--gps", receiver.path, "--baud", "9600", "--broker", mosquitto.url,
                           "--state", str(tmp_path / "state"), "--indicator", "file:%s" % (tmp_path / "led"))
    assert status == 0, found
    assert found["gps"]["level"] == "ok" and "NMEA at 9600 baud, talkers GP, fix" in found["gps"]["detail"]
    assert found["broker"]["level"] == "ok" and "reachable" in found["broker"]["detail"]
    assert found["mqtt"]["level"] == "ok" and "CONNACK 0x00 Success (MQTT 5)" in found["mqtt"]["detail"]
    assert found["state"]["level"] == "ok" and "will be created" in found["state"]["detail"]
    assert found["control"]["level"] == "ok" and found["clock"]["level"] == "ok"
    assert not (tmp_path / "state").exists()  # the check leaves nothing behind


def test_a_closed_port_fails_with_its_reason_and_a_remedy(receiver: PtyReceiver, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    status = main(["doctor", "--gps", receiver.path, "--broker", "mqtt://127.0.0.1:%d" % port,
                   "--state", str(tmp_path), "--window", "0.3"])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL broker    TCP 127.0.0.1:%d: connection refused, nothing listens there" % port in out
    assert "-> start the broker" in out and "checks: 1 FAILED" in out


def test_key_files_and_the_config_file(mosquitto, tmp_path: Path, traces: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "e2e.key"
    secret.write_text("00" * 32)
    secret.chmod(0o644)
    status, found = doctor(capsys, "--gps", str(traces / "ublox-8.log"), "--broker", mosquitto.url,
                           "--state", str(tmp_path), "--backend-key", str(tmp_path / "missing.pub"),
                           "--e2e-key", str(secret))
    assert status == 1
    assert found["backend-key"]["level"] == "FAIL" and "cannot read the backend public key" in \
        found["backend-key"]["detail"] and "tcu backend keygen" in found["backend-key"]["remedy"]
    assert found["e2e-key"]["level"] == "warn" and found["e2e-key"]["remedy"] == "chmod 600 %s" % secret
    assert found["gps"]["level"] == "ok" and "72 fixes" in found["gps"]["detail"]

    config = tmp_path / "tcu.toml"
    config.write_text('[gps]\nsource = "%s"\n[broker]\nurl = "%s"\n[unit]\nstate = "%s"\n'
                      % (traces / "ublox-8.log", mosquitto.url, tmp_path))
    status, found = doctor(capsys, "--config", str(config))
    assert status == 0 and found["config"]["detail"] == "config %s" % config and found["mqtt"]["level"] == "ok"
    config.write_text("[gps]\nbaud = 'fast'\n")
    status, found = doctor(capsys, "--config", str(config))
    assert status == 1 and list(found) == ["config"] and "gps.baud" in found["config"]["detail"]


def test_state_dirs_that_will_not_do(receiver: PtyReceiver, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    broker = "mqtt://127.0.0.1:%d" % closed_port()
    (tmp_path / "file").write_text("")
    status, found = doctor(capsys, "--gps", receiver.path, "--broker", broker, "--state", str(tmp_path / "file"))
    assert status == 1 and "is not a directory" in found["state"]["detail"]
    status, found = doctor(capsys, "--gps", receiver.path, "--broker", broker, "--state", "/proc/tcu-state")
    assert found["state"]["level"] == "FAIL" and "cannot be created" in found["state"]["detail"]


def test_the_control_socket_of_a_running_unit(receiver: PtyReceiver, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "c.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        _, found = doctor(capsys, "--gps", receiver.path, "--state", str(tmp_path), "--control", path)
    assert found["control"]["level"] == "FAIL" and "already running" in found["control"]["detail"]
    _, found = doctor(capsys, "--gps", receiver.path, "--state", str(tmp_path), "--control", path)
    assert found["control"]["level"] == "ok" and "stale socket" in found["control"]["detail"]


def test_a_clock_before_the_build_fails() -> None:
    finding = check_clock(now=0.0)[0]
    assert (finding.level, finding.check) == ("FAIL", "clock") and "1970-01-01" in finding.detail


def _doctor_as_nobody(args: list[str]) -> tuple[int, str]:
    """`tcu doctor ARGS` run in a forked child that has dropped to user and group nobody.

    Forked, not exec'd: the checkout (and its venv) may sit in a private temporary
    directory that nobody cannot even enter, and the child needs none of it on disk. The
    same command runs first here, as root, so every module it imports is already loaded.
    """
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        main(args)  # warm-up: imports every module the run needs
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, run the doctor, send its output back
        code = 3
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = main(args)
            os.write(write_end, out.getvalue().encode())
        except BaseException:  # shown in the parent's assertion message
            import traceback

            os.write(write_end, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_as_a_user_outside_dialout(receiver: PtyReceiver) -> None:
    """As `nobody`: a receiver in group dialout and a state directory it cannot write."""
    state = tempfile.mkdtemp(prefix="doctor-state-")
    os.chmod(state, 0o755)  # root's, readable by all, writable by root only
    shutil.chown(receiver.path, group="dialout")
    os.chmod(receiver.path, 0o660)
    try:
        code, output = _doctor_as_nobody(["doctor", "--json", "--gps", receiver.path, "--state", state,
                                          "--broker", "mqtt://127.0.0.1:%d" % closed_port()])
    finally:
        shutil.rmtree(state)
    assert code == 1 and "Traceback" not in output, output
    found = {f["check"]: f for f in map(json.loads, output.splitlines())}
    assert found["gps"]["level"] == "FAIL" and "user nobody is not in group dialout" in found["gps"]["detail"]
    assert found["gps"]["remedy"].startswith("sudo usermod -aG dialout $USER")
    assert found["state"]["level"] == "FAIL" and "Permission denied" in found["state"]["detail"]


def test_mutual_tls_handshakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        pytest.skip("mosquitto is not installed")
    pki = make_pki(tmp_path / "pki")
    broker = TlsMosquitto(tmp_path, pki)
    broker.start()
    url = "mqtts://127.0.0.1:%d" % broker.port
    base = ["--gps", str(Path(__file__).parent / "data" / "ublox-lea-4h-excerpt.log"), "--broker", url,
            "--state", str(tmp_path / "state")]
    try:
        status, good = doctor(capsys, *base, "--tls-ca", str(pki.ca_cert), "--tls-cert", str(pki.client.cert),
                              "--tls-key", str(pki.client.key))
        _, other_ca = doctor(capsys, *base, "--tls-ca", str(pki.other_ca_cert))
        _, no_cert = doctor(capsys, *base, "--tls-ca", str(pki.ca_cert))
    finally:
        broker.stop()
    assert status == 0 and good["tls"]["level"] == "ok" and "certificate verified" in good["tls"]["detail"]
    assert good["mqtt"]["level"] == "ok"
    assert other_ca["tls"]["level"] == "FAIL" and "certificate verify failed" in other_ca["tls"]["detail"]
    refused = no_cert["tls"] if no_cert.get("tls", {}).get("level") == "FAIL" else no_cert["mqtt"]
    assert refused["level"] == "FAIL" and "--tls-cert" in refused["remedy"]
