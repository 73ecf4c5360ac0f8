"""The scheme that does not match the port, and a port that is not an MQTT broker, said as such
by every command that connects (tcu run, replay, backend, fleet), against a real Mosquitto with
a mutual-TLS listener beside a plain one: mqtts:// to the plain port fails in the TLS handshake
and hints mqtt://; mqtt:// to the TLS port gets no CONNACK and hints mqtts://; a silent port
"did not answer CONNECT", which is no refusal."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEMO_TRACE, Mosquitto
from pki import Pki
from test_tls import TlsMosquitto, broker, pki  # noqa: F401 - the TLS broker's fixtures

from tcu.emulator.connect_errors import not_tls

TCU = [sys.executable, "-m", "tcu.tools.cli"]
PLAIN_HINT = "is it a plain MQTT port (use mqtt://)?"
TLS_HINT = "is it a TLS port (use mqtts://)?"


def command(name: str, url: str, tmp_path: Path) -> list[str]:
    return {
        "run": ["run", "--gps", str(DEMO_TRACE), "--state", str(tmp_path / "state"), "--broker", url],
        "replay": ["replay", str(DEMO_TRACE), "--trigger", "crash@3", "--broker", url],
        "backend": ["backend", "--count", "1", "--broker", url],
        "fleet": ["fleet", "--units", "2", "--duration", "3", "--quiet", "--traces", str(DEMO_TRACE), "--broker", url],
    }[name]


def tls_args(name: str, pki: Pki) -> list[str]:  # noqa: F811 - the fixture's type
    if name == "fleet":
        return ["--ca", str(pki.ca_cert), "--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]
    return ["--tls-ca", str(pki.ca_cert), "--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]


def one_line_error(args: list[str]) -> str:
    result = subprocess.run([*TCU, *args], capture_output=True, text=True, timeout=90)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


COMMANDS = ["run", "replay", "backend", "fleet"]


@pytest.mark.parametrize("name", COMMANDS)
def test_mqtts_to_a_plain_port_says_the_tls_handshake_failed(name: str, mosquitto: Mosquitto, pki: Pki,  # noqa: F811
                                                             tmp_path: Path) -> None:
    url = "mqtts://127.0.0.1:%d" % mosquitto.port
    error = one_line_error(command(name, url, tmp_path) + tls_args(name, pki))
    assert "the TLS handshake with 127.0.0.1:%d failed" % mosquitto.port in error and PLAIN_HINT in error


@pytest.mark.parametrize("name", COMMANDS)
def test_mqtt_to_a_tls_port_hints_mqtts(name: str, broker: TlsMosquitto, tmp_path: Path) -> None:  # noqa: F811
    url = "mqtt://127.0.0.1:%d" % broker.port
    error = one_line_error(command(name, url, tmp_path))
    assert "broker %s closed the connection before CONNACK" % url in error and TLS_HINT in error
    assert "refused" not in error


@pytest.fixture
def silent() -> Iterator[int]:
    """A port that accepts TCP and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.mark.parametrize("name", ["replay", "backend"])
def test_a_silent_port_did_not_answer_connect(name: str, silent: int, tmp_path: Path) -> None:
    url = "mqtt://127.0.0.1:%d" % silent
    error = one_line_error(command(name, url, tmp_path))
    assert "broker %s did not answer CONNECT within 5 s" % url in error
    assert "is it an MQTT broker? a TLS port needs mqtts://" in error and "refused" not in error


def test_what_counts_as_a_peer_that_does_not_speak_tls() -> None:
    wrong = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    wrong.reason = "WRONG_VERSION_NUMBER"
    assert not_tls(wrong) and not_tls(ConnectionResetError(104, "Connection reset by peer"))
    assert not_tls(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    assert not_tls(TimeoutError("_ssl.c:990: The handshake operation timed out"))
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    alert.reason = "TLSV1_ALERT_UNKNOWN_CA"
    assert not not_tls(untrusted) and not not_tls(alert) and not not_tls(ConnectionRefusedError(111, "refused"))
