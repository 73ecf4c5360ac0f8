"""Issue 18, data and safety: what a new user's mistakes must not cost. TLS files are checked
before anything starts; one unit per state directory; a pty GPS stops without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import tcu, wait_until
from test_daemon import LiveGps

from tcu.emulator.state_lock import StateLock
from tcu.firmware.errors import SourceError, UsageError
from tcu.hal.serial_port import ReconnectingSource

EXCERPT = str(Path(__file__).parent / "data" / "ublox-lea-4h-excerpt.log")


def one_line_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("command", [
    ["replay", EXCERPT, "--trigger", "crash@0"], ["replay", EXCERPT, "--outbox", "OUTBOX"],
    ["run", "--gps", EXCERPT, "--state", "STATE"], ["backend", "--count", "1"],
])
def test_a_missing_tls_file_is_named_before_anything_starts(command: list[str], tmp_path: Path) -> None:
    command = [str(tmp_path / a) if a in ("OUTBOX", "STATE") else a for a in command]
    result = tcu(*command, "--broker", "mqtts://127.0.0.1:1", "--tls-ca", "/nonexistent.crt")
    one_line_refusal(result, "--tls-ca /nonexistent.crt: no such file")
    assert not (tmp_path / "STATE").exists() and not (tmp_path / "OUTBOX").exists()


def test_unreadable_or_unparsable_tls_files_are_named(tmp_path: Path) -> None:
    junk = tmp_path / "ca.crt"
    junk.write_text("not a certificate\n")
    one_line_refusal(tcu("backend", "--broker", "mqtts://127.0.0.1:1", "--tls-ca", str(junk)),
                     "--tls-ca %s: no PEM certificate" % junk)
    one_line_refusal(tcu("backend", "--broker", "mqtts://127.0.0.1:1", "--tls-ca", str(tmp_path)),
                     "a directory, not a file")
    one_line_refusal(tcu("backend", "--broker", "mqtts://127.0.0.1:1", "--tls-cert", str(junk), "--tls-key",
                         str(junk)), "--tls-cert %s with --tls-key %s: not a PEM certificate" % (junk, junk))
    config = tmp_path / "tcu.toml"
    config.write_text('[broker]\nurl = "mqtts://127.0.0.1:1"\ntls_ca = "%s"\n' % junk)
    one_line_refusal(tcu("run", "--config", str(config), "--gps", EXCERPT, "--state", str(tmp_path / "s")),
                     "broker.tls_ca (config %s)" % config)


def test_options_that_would_be_ignored_are_refused(tmp_path: Path) -> None:
    one_line_refusal(tcu("backend", "--broker", "mqtt://127.0.0.1:1", "--tls-ca", "/etc/hostname"),
                     "--tls-ca is for mqtts:// only")
    one_line_refusal(tcu("run", "--gps", EXCERPT, "--state", str(tmp_path / "s"), "--broker", "mqtt://127.0.0.1:1",
                         "--tls-cert", "/etc/hostname"), "--tls-cert is for mqtts:// only")
    one_line_refusal(tcu("replay", EXCERPT, "--tls-ca", "/etc/hostname"), "need --broker mqtts://")
    for url in ("mqtt://127.0.0.1:1883/units", "mqtt://127.0.0.1:1883?x=1"):
        one_line_refusal(tcu("backend", "--broker", url), "means nothing to MQTT; give mqtt://127.0.0.1:1883")
        one_line_refusal(tcu("replay", EXCERPT, "--broker", url), "means nothing to MQTT")
    assert not (tmp_path / "s").exists()


def test_a_state_directory_holds_one_unit(tmp_path: Path) -> None:
    first = StateLock(str(tmp_path / "state"))
    try:
        with pytest.raises(UsageError, match=r"in use by another unit \(PID %d\)" % os.getpid()):
            StateLock(str(tmp_path / "state"))
    finally:
        first.release()
    StateLock(str(tmp_path / "state")).release()  # free again once released


def test_a_second_tcu_run_on_one_state_directory_is_refused(mosquitto, tmp_path: Path) -> None:
    gps, state = LiveGps(), tmp_path / "state"
    base = ["run", "--broker", mosquitto.url, "--gps", gps.path, "--baud", "9600", "--state", str(state)]
    unit = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", *base, "--control", str(tmp_path / "a.sock")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The unit's stderr once it has exited (with any status), read without blocking on a running one.
        assert wait_until(lambda: (tmp_path / "a.sock").exists()), (
            unit.communicate()[1] if unit.poll() is not None else "no control socket yet")
        boot = (state / "outbox.boot").read_bytes() if (state / "outbox.boot").exists() else None
        second = tcu(*base, "--control", str(tmp_path / "b.sock"))
        one_line_refusal(second, "state directory %s is in use by another unit (PID %d)" % (state, unit.pid))
        assert not (tmp_path / "b.sock").exists()
        if boot is not None:
            assert (state / "outbox.boot").read_bytes() == boot
        unit.send_signal(signal.SIGTERM)
        assert unit.wait(15) == 0
        assert "Traceback" not in (unit.stderr.read() if unit.stderr else "")
    finally:
        if unit.poll() is None:
            unit.kill()
            unit.wait(5)
        gps.close()
    # the holder is gone: the directory is free again
    StateLock(str(state)).release()


def test_closing_a_pty_gps_under_its_reader_raises_only_source_error() -> None:
    """pyserial's read() racing close() raised TypeError (fd None in select) in tcu-gps."""
    master, slave = os.openpty()
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            try:
                os.write(master, b"$GPGGA,,,,,,0,00,,,,,,,*66\r\n" * 4)
            except OSError:
                return
            time.sleep(0.001)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    surprises: list[BaseException] = []
    try:
        for _ in range(40):
            source = ReconnectingSource(os.ttyname(slave), 9600)

            def read(source: ReconnectingSource = source) -> None:
                try:
                    while True:
                        source.read()
                except SourceError:
                    return
                except BaseException as exc:  # noqa: BLE001 - what the test is looking for
                    surprises.append(exc)

            reader = threading.Thread(target=read)
            reader.start()
            time.sleep(0.005)
            source.close()
            reader.join(5)
            assert not reader.is_alive()
    finally:
        stop.set()
        writer.join(2)
        os.close(master)
        os.close(slave)
    assert surprises == []


def test_the_shipped_mosquitto_conf_starts_a_broker_that_keeps_every_queued_message(tmp_path: Path) -> None:
    """deploy/mosquitto.conf, on a free port and a scratch directory: Mosquitto accepts every
    line of it, and its queue limit is not the silent 1000 of a stock broker."""
    import shutil

    from conftest import free_port

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        pytest.skip("mosquitto is not installed")
    text = (Path(__file__).resolve().parents[1] / "deploy" / "mosquitto.conf").read_text()
    assert "max_queued_messages 0" in text and "persistence true" in text
    port = free_port()
    text = text.replace("listener 1883 127.0.0.1", "listener %d 127.0.0.1" % port)
    text = text.replace("/var/lib/mosquitto/", "%s/" % tmp_path).replace("log_dest syslog", "log_dest stderr")
    import getpass
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text + "user %s\n" % getpass.getuser())
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import socket

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_until(lambda: listening() or proc.poll() is not None) and proc.poll() is None, \
            proc.stderr.read() if proc.stderr else ""
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Error" not in err, err


def test_a_refused_broker_url_never_shows_its_password() -> None:
    for url in ("mqtt://ann:s3cret@127.0.0.1:1883/units", "mqtt://ann:s3cret@127.0.0.1:1883"):
        extra = ["--tls-ca", "/etc/hostname"] if not url.endswith("units") else []
        result = tcu("backend", "--broker", url, *extra)
        assert result.returncode == 2 and "s3cret" not in result.stderr and "Traceback" not in result.stderr
