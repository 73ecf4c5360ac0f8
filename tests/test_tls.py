"""Mutual TLS against a real Mosquitto (issue 5): the unit's certificate is its identity; a
client without a certificate, with an expired or not-yet-valid one, or with one signed by
another CA is refused, and so is a broker the client does not trust.

Refusals are checked on both sides. With TLS 1.3 (the default) the broker checks the client
certificate after the client's side of the handshake is done, so paho's connect() returns and
the refusal arrives as a dropped connection with no CONNACK. The broker's log names the reason
(coarsely: "certificate verify failed" for expired, not yet valid and unknown CA alike); the
client sees the broker's alert only if it reads it before its CONNECT reaches the closed socket,
otherwise an EOF or a reset. With the client capped at TLS 1.2 the alert always reaches
connect(), whose ssl.SSLError names the exact reason.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode
from pki import UNIT_ID, KeyPair, Pki, make_pki

from tcu.emulator.uplink import TlsOptions, open_client
from tcu.firmware.errors import LinkError

WAIT_S = 3.0  # bound for every event this file waits for
TOPIC = "tcu/v1/%s/up" % UNIT_ID


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float = WAIT_S,
             step: Callable[[], object] | None = None) -> bool:
    """Poll condition (running step between polls, or a short sleep) until it holds or time is up."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        if step is not None:
            step()
        else:
            time.sleep(0.01)
    return True


class TlsMosquitto:
    """A Mosquitto with one mutual-TLS listener, logging to stderr redirected to a file.

    Started as root, Mosquitto drops to the `mosquitto` user before it loads certificates or
    opens `log_dest file`, and neither is reachable in pytest's owner-only tmp directories;
    `user` set to whoever runs the tests keeps it able to read what the tests wrote (as root
    it logs a warning that it should not run as root).
    """

    def __init__(self, workdir: Path, pki: Pki) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        # Each certificate's CN is its username; a unit may use only its own topics.
        acl = workdir / "acl"
        acl.write_text("pattern readwrite tcu/v1/%u/#\n")
        self.config.write_text(
            "user %s\nlistener %d 127.0.0.1\n"
            "cafile %s\ncertfile %s\nkeyfile %s\n"
            "acl_file %s\n"
            "require_certificate true\nuse_identity_as_username true\n"
            "persistence false\nmax_queued_messages 0\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            % (pwd.getpwuid(os.geteuid()).pw_name, self.port, pki.ca_cert, pki.server.cert, pki.server.key, acl))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=log)
        proc = self.proc
        # "running" is logged once every listener is open; no probe connection pollutes the log.
        if not wait_for(lambda: proc.poll() is not None or " running" in self.log_text(), 10):
            self.stop()
            raise RuntimeError("mosquitto did not start on port %d:\n%s" % (self.port, self.log_text()))
        if proc.poll() is not None:
            raise RuntimeError("mosquitto exited:\n%s" % self.log_text())

    def log_text(self, start: int = 0) -> str:
        with self.log.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log.stat().st_size

    def wait_log(self, needle: str, start: int) -> str:
        """The log written since offset start, once it contains needle (or when time is up)."""
        wait_for(lambda: needle in self.log_text(start))
        return self.log_text(start)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsMosquitto]:
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed: .ci/run must install it")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    server = TlsMosquitto(tmp_path_factory.mktemp("mosquitto-tls"), pki)
    server.start()
    yield server
    server.stop()


@dataclass
class Attempt:
    """What one connection attempt produced; the client's loop is driven by hand, so nothing
    reconnects behind the test's back."""

    client: mqtt.Client
    connect_error: Exception | None = None  # raised by connect(): TLS handshake or socket
    connack: list[ReasonCode] = field(default_factory=list)
    disconnects: list[ReasonCode] = field(default_factory=list)
    client_log: list[str] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return any(not reason.is_failure for reason in self.connack)

    @property
    def closed(self) -> bool:
        return self.connect_error is not None or bool(self.disconnects)

    def pump(self) -> None:
        self.client.loop(timeout=0.05)

    def close(self) -> None:
        """paho closes the socket itself when the connection is lost; otherwise disconnect."""
        if self.client.socket() is not None:
            self.client.disconnect()
            wait_for(lambda: self.client.socket() is None, step=self.pump)


def client_context(ca: Path, pair: KeyPair | None, tls_max: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))  # verifies the broker and its name
    context.maximum_version = tls_max
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return context


def attempt(port: int, ca: Path | None, pair: KeyPair | None,
            tls_max: ssl.TLSVersion | None = None, client_id: str = "probe") -> Attempt:
    """Connect and drive the loop until CONNACK, a dropped connection or WAIT_S; never raises.

    ca None: plain TCP. tls_max None: paho's own tls_set() (TLS 1.3 here)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    result = Attempt(client)
    client.on_connect = lambda c, u, flags, reason, props: result.connack.append(reason)
    client.on_disconnect = lambda c, u, flags, reason, props: result.disconnects.append(reason)
    client.on_log = lambda c, u, level, text: result.client_log.append(text)
    client.on_message = lambda c, u, message: result.received.append(bytes(message.payload))
    client.on_publish = lambda c, u, mid, reason, props: result.acked.append(mid)
    if ca is not None and tls_max is None:
        client.tls_set(ca_certs=str(ca), certfile=str(pair.cert) if pair else None,
                       keyfile=str(pair.key) if pair else None)
    elif ca is not None and tls_max is not None:
        client.tls_set_context(client_context(ca, pair, tls_max))
    client.connect_timeout = WAIT_S
    try:
        client.connect("127.0.0.1", port, keepalive=30)
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        result.connect_error = err
        return result
    wait_for(lambda: bool(result.connack) or result.closed, step=result.pump)
    return result


TLS13 = pytest.param(None, id="tls1.3")
TLS12 = pytest.param(ssl.TLSVersion.TLSv1_2, id="tls1.2")


@pytest.mark.parametrize("tls_max", [TLS13, TLS12])
def test_valid_client_connects_as_its_unit_and_round_trips_qos1(
        broker: TlsMosquitto, pki: Pki, tls_max: ssl.TLSVersion | None) -> None:
    start = broker.log_size()
    result = attempt(broker.port, pki.ca_cert, pki.client, tls_max, client_id="tcu-valid")
    try:
        assert result.connect_error is None
        assert result.connack and not result.connack[0].is_failure, result.connack
        assert result.client.socket() is not None
        assert isinstance(result.client.socket(), ssl.SSLSocket)
        # use_identity_as_username: the broker knows the unit by its certificate's CN.
        assert "as tcu-valid (p2, c1, k30, u'%s')" % UNIT_ID in broker.wait_log("u'%s'" % UNIT_ID, start)

        sub = result.client.subscribe(TOPIC, qos=1)
        assert sub[0] == mqtt.MQTT_ERR_SUCCESS
        info = result.client.publish(TOPIC, b"\x82\x01\x02", qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        assert wait_for(lambda: info.mid in result.acked and bool(result.received), step=result.pump), \
            "no PUBACK or no message within %.0f s" % WAIT_S
        assert result.received == [b"\x82\x01\x02"]
    finally:
        result.close()


def assert_refused(result: Attempt) -> None:
    """Never a successful CONNACK, and the connection actively ended (no silent hang)."""
    if not result.closed:  # keep listening for the rest of the bound: a late CONNACK fails
        wait_for(lambda: bool(result.connack), step=result.pump)
    result.close()
    assert not result.accepted, "broker accepted the client: %s" % result.connack
    assert result.closed, "connection neither refused nor closed within %.0f s" % WAIT_S


# case: (Pki field of the client certificate, broker log reason, broker's alert with TLS 1.3,
#        broker's alert with TLS 1.2)
REFUSED_CLIENTS = {
    "no-certificate": (None, "peer did not return a certificate", "alert certificate required",
                       "alert handshake failure"),
    "expired": ("expired", "certificate verify failed", "alert certificate expired", "alert certificate expired"),
    "not-yet-valid": ("not_yet_valid", "certificate verify failed", "alert bad certificate", "alert bad certificate"),
    "other-ca": ("other_ca_client", "certificate verify failed", "alert unknown ca", "alert unknown ca"),
}
LOST_ALERT = ("EOF occurred in violation of protocol", "Connection reset by peer")


@pytest.mark.parametrize("case", sorted(REFUSED_CLIENTS))
def test_broker_refuses_client_over_tls13_and_logs_why(broker: TlsMosquitto, pki: Pki, case: str) -> None:
    name, broker_reason, alert, _ = REFUSED_CLIENTS[case]
    pair = getattr(pki, name) if name else None
    start = broker.log_size()
    result = attempt(broker.port, pki.ca_cert, pair, client_id="tcu-%s" % case)
    assert_refused(result)
    # TLS 1.3: connect() returned (paho's trap); the refusal is the dropped connection.
    assert result.connect_error is None
    assert result.disconnects and result.disconnects[0].is_failure
    failures = [line for line in result.client_log if line.startswith("failed to receive on socket")]
    assert failures, result.client_log
    assert alert in failures[0] or any(lost in failures[0] for lost in LOST_ALERT), failures[0]
    # Mosquitto logs either "OpenSSL Error[0]: ...REASON" or "Client connection from ... failed:
    # ...REASON", depending on where its non-blocking handshake notices; never the client id.
    log = broker.wait_log(broker_reason, start)
    assert broker_reason in log
    assert "tcu-%s" % case not in log


@pytest.mark.parametrize("case", sorted(REFUSED_CLIENTS))
def test_broker_refuses_client_over_tls12_with_the_alert_naming_why(
        broker: TlsMosquitto, pki: Pki, case: str) -> None:
    name, _, _, alert = REFUSED_CLIENTS[case]
    pair = getattr(pki, name) if name else None
    result = attempt(broker.port, pki.ca_cert, pair, ssl.TLSVersion.TLSv1_2)
    assert_refused(result)
    assert isinstance(result.connect_error, ssl.SSLError)
    assert alert in str(result.connect_error)


@pytest.mark.parametrize("tls_max", [TLS13, TLS12])
def test_client_refuses_broker_signed_by_a_ca_it_does_not_trust(
        broker: TlsMosquitto, pki: Pki, tls_max: ssl.TLSVersion | None) -> None:
    start = broker.log_size()
    result = attempt(broker.port, pki.other_ca_cert, pki.client, tls_max)
    assert_refused(result)
    assert isinstance(result.connect_error, ssl.SSLCertVerificationError)
    assert result.connect_error.verify_message == "self-signed certificate in certificate chain"
    assert "alert unknown ca" in broker.wait_log("alert unknown ca", start)


def test_plain_tcp_to_the_tls_port_is_refused(broker: TlsMosquitto) -> None:
    start = broker.log_size()
    result = attempt(broker.port, None, None)
    assert_refused(result)
    assert result.connect_error is None and result.disconnects and result.disconnects[0].is_failure
    assert "wrong version number" in broker.wait_log("wrong version number", start)


def unit_tls(pki: Pki, pair: KeyPair) -> TlsOptions:
    return TlsOptions(ca_file=str(pki.ca_cert), cert_file=str(pair.cert), key_file=str(pair.key))


def test_unit_client_connects_over_mqtts_with_its_certificate(broker: TlsMosquitto, pki: Pki) -> None:
    url = "mqtts://127.0.0.1:%d" % broker.port
    start = broker.log_size()
    client = open_client(url, "tcu-%s" % UNIT_ID, timeout_s=WAIT_S, tls=unit_tls(pki, pki.client))
    try:
        assert client.is_connected()
        info = client.publish(TOPIC, b"\xa0", qos=1)
        info.wait_for_publish(WAIT_S)
        assert info.is_published()
        log = broker.wait_log("u'%s'" % UNIT_ID, start)
        assert re.search(r"as tcu-%s \(p\d, c\d, k\d+, u'%s'\)" % (UNIT_ID, UNIT_ID), log), log
    finally:
        client.disconnect()
        client.loop_stop()


def test_unit_client_with_an_expired_certificate_gets_link_error_in_bounded_time(
        broker: TlsMosquitto, pki: Pki) -> None:
    url = "mqtts://127.0.0.1:%d" % broker.port
    start = broker.log_size()
    began = time.monotonic()
    with pytest.raises(LinkError) as refused:
        open_client(url, "tcu-%s" % UNIT_ID, timeout_s=WAIT_S, tls=unit_tls(pki, pki.expired))
    # Not the CONNACK deadline: the broker's close ends the wait (paho's reconnect delay is 1 s).
    assert time.monotonic() - began < WAIT_S
    assert url in str(refused.value) and "closed the connection before CONNACK" in str(refused.value)
    assert "refused client certificate" in str(refused.value) and "mqtt://" not in str(refused.value)
    assert "certificate verify failed" in broker.wait_log("certificate verify failed", start)


def test_a_unit_cannot_command_another_unit(broker: TlsMosquitto, pki: Pki) -> None:
    """The ACL binds the certificate's identity to its own topics: unit-0001 cannot publish
    on unit-0002's downlink (MQTT 5 PUBACK 0x87, not authorized; Mosquitto 2.0 then drops
    the connection). Reads are checked at delivery, so a subscription alone proves nothing."""
    acks: list[int] = []

    def setup(client: mqtt.Client) -> None:
        client.on_publish = lambda c, u, mid, reason, props: acks.append(reason.value)

    url = "mqtts://127.0.0.1:%d" % broker.port
    client = open_client(url, "tcu-%s-acl" % UNIT_ID, timeout_s=WAIT_S, setup=setup, tls=unit_tls(pki, pki.client))
    try:
        client.publish("tcu/v1/unit-0002/down", b"\xa0", qos=1)
        assert wait_for(lambda: bool(acks))
        assert acks == [0x87]
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_durable_uplink_delivers_over_mutual_tls_and_refuses_clearly(broker: TlsMosquitto, pki: Pki,
                                                                        tmp_path: Path) -> None:
    from tcu.emulator.link import DurableUplink
    from tcu.firmware.events import Publish
    from tcu.protocol import messages

    url = "mqtts://127.0.0.1:%d" % broker.port
    with DurableUplink(url, UNIT_ID, str(tmp_path / "outbox"), tls=unit_tls(pki, pki.client)) as uplink:
        for seq in range(1, 21):
            payload = messages.encode_report(seq, 1, 1, seq, 481374300, 115754900, 50, 22)
            uplink.send(Publish(payload, 0, 1, seq, True))
        uplink.drain(WAIT_S)
        assert uplink.stats.acked >= 20 and len(uplink.outbox) == 0
    with pytest.raises(LinkError, match="refused|closed|did not"):
        DurableUplink(url, UNIT_ID, str(tmp_path / "outbox2"), tls=unit_tls(pki, pki.expired),
                      connect_timeout_s=WAIT_S)


def test_a_signed_command_goes_out_over_mutual_tls(broker: TlsMosquitto, pki: Pki, tmp_path: Path) -> None:
    """`tcu backend command` takes the --tls-* options (it used to accept none and fail on mqtts://)."""
    import sys

    def tcu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tcu.tools.cli", *args], capture_output=True, text=True,
                              timeout=30)

    assert tcu("backend", "keygen", "--out", str(tmp_path)).returncode == 0
    received: list[bytes] = []

    def setup(client: mqtt.Client) -> None:
        client.on_message = lambda c, u, message: received.append(bytes(message.payload))

    url = "mqtts://127.0.0.1:%d" % broker.port
    listener = open_client(url, "tcu-%s-down" % UNIT_ID, timeout_s=WAIT_S, setup=setup, tls=unit_tls(pki, pki.client))
    try:
        listener.subscribe("tcu/v1/%s/down" % UNIT_ID, qos=1)
        common = ["backend", "command", "lawful-request", "--broker", url, "--unit", UNIT_ID, "--case", "c-1",
                  "--for", "1h", "--key", str(tmp_path / "backend.key")]
        plain = tcu(*common)
        assert plain.returncode != 0 and "Traceback" not in plain.stderr and url in plain.stderr
        sent = tcu(*common, "--tls-ca", str(pki.ca_cert), "--tls-cert", str(pki.client.cert),
                   "--tls-key", str(pki.client.key))
        assert sent.returncode == 0, sent.stderr
        assert wait_for(lambda: len(received) == 1)
        assert received[0][:1] == b"\xd2"  # a COSE_Sign1 (tag 18), the signed command
    finally:
        listener.disconnect()
        listener.loop_stop()
