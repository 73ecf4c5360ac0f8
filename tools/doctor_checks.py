"""The checks of `tcu doctor --config FILE` (or `tcu run`'s options): is this setup going to run?

Each check gives one Finding: ok, warn or FAIL, what was seen and, when it is not ok, what
to do about it. The checks try what the unit will do, as the user who will run it: open the
GPS device and listen for NMEA, reach the broker over TCP, shake hands over TLS with the
configured CA and client certificate, get a CONNACK (with its reason code), load every key
file, write and fsync a file in the state directory, look at the control socket path, the
system clock and, for gpio: specs, gpiozero.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import ssl
import stat
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tcu.emulator.config import Config
from tcu.firmware.errors import TcuError
from tcu.tools.extras import extra_hint

OK, WARN, FAIL = "ok", "warn", "FAIL"
TIMEOUT_S = 5.0
SUN_PATH_MAX = 107  # bytes in a Unix socket path, without the NUL
VOLATILE_FS = {"tmpfs", "ramfs", "devtmpfs"}
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "sshfs", "fuse.sshfs", "9p"}


@dataclass
class Finding:
    check: str
    level: str
    detail: str
    remedy: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        line = "%-4s %-9s %s" % (self.level, self.check, self.detail)
        return line + ("\n     %-9s -> %s" % ("", self.remedy) if self.remedy else "")


# ---- broker ----------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _connect_packet(version: int, client_id: str, auth: Any = None) -> bytes:
    """An MQTT CONNECT: clean session, no will, keep-alive 10 s (v5: empty properties), the
    user name and password the unit would give (emulator/credentials.py)."""
    flags = 0x02 | (0x80 if auth is not None else 0) | (0x40 if auth is not None and auth.password is not None else 0)
    body = struct.pack("!H", 4) + b"MQTT" + bytes([version, flags]) + struct.pack("!H", 10)
    if version == 5:
        body += b"\x00"
    body += struct.pack("!H", len(client_id)) + client_id.encode()
    if auth is not None:
        name = auth.username.encode()
        body += struct.pack("!H", len(name)) + name
        if auth.password is not None:
            body += struct.pack("!H", len(auth.password)) + auth.password
    return bytes([0x10]) + _varint(len(body)) + body


def _connack(sock: socket.socket, version: int, auth: Any = None) -> tuple[int, Any] | None:
    """Send CONNECT, return the CONNACK's reason code and (MQTT 5) the limits it announces
    (None: closed first); DISCONNECT after."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from tcu.emulator.mqtt_limits import Limits

    sock.sendall(_connect_packet(version, "tcu-doctor-%d" % os.getpid(), auth))
    data = b""
    while len(data) < 4 or (len(data) < 2 + data[1] and data[1] < 128):  # a CONNACK under 128 bytes
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    if data[0] >> 4 != 2:
        raise OSError("the first packet is not a CONNACK")
    limits = None
    if data[3] == 0:
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        if version == 5 and data[1] > 2 and data[1] < 128:
            props = Properties(PacketTypes.CONNACK)
            props.unpack(data[4:2 + data[1]])
            limits = Limits.from_connack(props)
    return data[3], limits


def _reason(version: int, code: int) -> str:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    if version == 5:
        return "0x%02X %s" % (code, ReasonCode(PacketTypes.CONNACK, identifier=code).getName())
    return "%d (%s)" % (code, mqtt.connack_string(code))


AUTH_HOW = ("broker.username and broker.password_file in the config (or --username, --password-file, "
            "or mqtt://USER:PASSWORD@HOST)")
REMEDIES = {0x86: "give the broker's user name and password: " + AUTH_HOW,
            0x87: "allow this client in the broker's ACL",
            0x85: "the broker rejects the client id: check its client id rules",
            4: "check the user name and password: " + AUTH_HOW,
            5: "allow this client in the broker's ACL", 2: "the broker rejects the client id"}


CLIENT_CERT_REMEDY = ("a broker that wants a client certificate drops clients without a valid one: give "
                      "--tls-cert/--tls-key signed by the CA it trusts, not expired (its log says why)")


def _open(host: str, port: int) -> socket.socket | Finding:
    try:
        return socket.create_connection((host, port), timeout=TIMEOUT_S)
    except socket.gaierror as err:
        return Finding("broker", FAIL, "cannot resolve %s: %s" % (host, err.strerror), "check the host in broker.url")
    except ConnectionRefusedError:
        return Finding("broker", FAIL, "TCP %s:%d: connection refused, nothing listens there" % (host, port),
                       "start the broker (e.g. `systemctl start mosquitto`) or correct broker.url / --broker")
    except TimeoutError:
        return Finding("broker", FAIL, "TCP %s:%d: no answer within %.0f s" % (host, port, TIMEOUT_S),
                       "check the host, the port and any firewall on the way")
    except OSError as err:
        return Finding("broker", FAIL, "TCP %s:%d: %s" % (host, port, err.strerror or err),
                       "check the network and broker.url")


def _tls(sock: socket.socket, config: Config, host: str) -> ssl.SSLSocket | Finding:
    from tcu.emulator.uplink import TlsOptions, tls_context

    try:
        context = tls_context(TlsOptions(config.tls_ca, config.tls_cert, config.tls_key))
    except TcuError as err:
        sock.close()
        return Finding("tls", FAIL, str(err), "check the --tls-ca/--tls-cert/--tls-key files (PEM, key matching)")
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as err:
        sock.close()
        return Finding("tls", FAIL, "handshake with %s: certificate verify failed: %s" % (
            host, err.verify_message or err.reason),
                       "--tls-ca must be the CA that signed the broker's certificate, for host name %s" % host)
    except (ssl.SSLError, OSError) as err:
        sock.close()
        why = getattr(err, "reason", None) or err
        need_cert = "CERTIFICATE_REQUIRED" in str(why) or not config.tls_cert
        return Finding("tls", FAIL, "handshake with %s: %s" % (host, why),
                       "the broker wants a client certificate: --tls-cert and --tls-key" if need_cert
                       else "the broker refused this client certificate: is it signed by the CA the broker trusts?")


def _session(config: Config, broker: Any, out: list[Finding]) -> socket.socket | None:
    """A TCP (and TLS) connection to the broker, or None with the reason in out."""
    opened = _open(broker.host, broker.port)
    if isinstance(opened, Finding):
        out.append(opened)
        return None
    if not broker.tls:
        return opened
    wrapped = _tls(opened, config, broker.host)
    if isinstance(wrapped, Finding):
        out.append(wrapped)
        return None
    return wrapped


def check_broker(config: Config) -> list[Finding]:
    from tcu.emulator.uplink import parse_broker_url

    try:
        broker = parse_broker_url(config.broker)
    except TcuError as err:
        return [Finding("broker", FAIL, str(err), "fix broker.url / --broker")]
    try:
        broker = parse_broker_url(config.broker, config.credentials())
    except TcuError as err:  # a password file others can read, say (never the password itself)
        return [Finding("auth", FAIL, str(err), "fix broker.username / broker.password_file")]
    out: list[Finding] = []
    sock = _session(config, broker, out)
    if sock is None:
        return out if out[0].check == "broker" else [_reachable(broker), *out]
    out.append(_reachable(broker))
    if isinstance(sock, ssl.SSLSocket):
        out.append(Finding("tls", OK, "%s with %s, certificate verified%s" % (
            sock.version(), broker.host, ", client certificate accepted" if config.tls_cert else "")))
    elif config.tls_ca or config.tls_cert or config.tls_key:
        out.append(Finding("tls", WARN, "TLS files given, but %s is plain MQTT: they are unused" % broker.url,
                           "use mqtts://HOST:8883 to encrypt the link"))
    finding = _mqtt(sock, broker.url, 5, broker.auth)
    if finding is None:  # a 3.1.1 broker refused MQTT 5: ask again in its version, as the unit does
        sock = _session(config, broker, out)
        finding = _mqtt(sock, broker.url, 4, broker.auth) if sock is not None else None
    return out + ([finding] if finding else [])


def _reachable(broker: Any) -> Finding:
    return Finding("broker", OK, "TCP %s:%d reachable" % (broker.host, broker.port))


def _mqtt(sock: socket.socket, url: str, version: int, auth: Any = None) -> Finding | None:
    """The CONNACK check; None if an MQTT 5 CONNECT was refused for its version."""
    name = "MQTT 5" if version == 5 else "MQTT 3.1.1"
    tls = isinstance(sock, ssl.SSLSocket)
    try:
        with sock:
            answer = _connack(sock, version, auth)
    except ssl.SSLError as err:  # TLS 1.3: the broker checks the client certificate after the handshake
        return Finding("tls", FAIL, "%s refused this client after the handshake: %s" % (url, err.reason or err),
                       CLIENT_CERT_REMEDY)
    except OSError as err:
        return Finding("mqtt", FAIL, "%s: no CONNACK: %s" % (url, err.strerror or err),
                       CLIENT_CERT_REMEDY if tls else "is this an MQTT broker's port?")
    if answer is None:
        return Finding("mqtt", FAIL, "%s: closed the connection before CONNACK" % url,
                       CLIENT_CERT_REMEDY if tls else "is this an MQTT broker's port? Does it want TLS (mqtts://)?")
    code, limits = answer
    if version == 5 and code in (1, 0x84):
        return None
    if code:
        return Finding("mqtt", FAIL, "%s refused the connection: CONNACK %s" % (url, _reason(version, code)),
                       REMEDIES.get(code, "see the broker's log"))
    if limits is not None and limits.max_qos < 1:
        return Finding("mqtt", FAIL, "%s accepts QoS 0 only (CONNACK Maximum QoS 0)" % url,
                       "the unit needs QoS 1 (acknowledged delivery): allow it in the broker (max_qos)")
    if limits is not None and limits.max_packet_size < 128:
        return Finding("mqtt", WARN, "%s: CONNACK %s (%s); %s: uplinks sealed end to end are about 110 bytes" % (
            url, _reason(version, code), name, limits.describe()), "raise the broker's max_packet_size")
    shown = "; %s" % limits.describe() if limits is not None else ""
    return Finding("mqtt", OK, "%s: CONNACK %s (%s)%s" % (url, _reason(version, code), name, shown))


# ---- key files -------------------------------------------------------------------------------

def check_keys(config: Config) -> list[Finding]:
    from cryptography import x509

    from tcu.emulator.crypto import load_e2e_key, load_public_key

    loaders: list[tuple[str, str | None, Callable[[str], Any], bool, str]] = [
        ("backend-key", config.backend_key, load_public_key, False,
         "the backend's Ed25519 public key in PEM (backend.pub from `tcu backend keygen`)"),
        ("hmac-key", config.backend_hmac_key, lambda p: load_e2e_key(p, "backend HMAC key"), True,
         "a file of 32 or 64 hex digits"),
        ("e2e-key", config.e2e_key, load_e2e_key, True, "a file of 32 or 64 hex digits"),
        ("tls-ca", config.tls_ca, lambda p: ssl.create_default_context(cafile=p), False,
         "the CA certificate(s) that signed the broker's certificate, in PEM"),
        ("tls-cert", config.tls_cert, lambda p: x509.load_pem_x509_certificate(Path(p).read_bytes()), False,
         "the client's certificate in PEM"),
        ("tls-key", config.tls_key, lambda p: Path(p).read_bytes(), True, "the client's private key in PEM"),
    ]
    out = []
    for name, path, load, secret, what in loaders:
        if path is None:
            continue
        try:
            load(path)
        except (TcuError, OSError, ValueError) as err:  # ssl.SSLError is an OSError
            out.append(Finding(name, FAIL, str(err) if isinstance(err, TcuError) else "%s: %s" % (
                path, getattr(err, "strerror", None) or err), "give %s" % what))
            continue
        mode = os.stat(path).st_mode
        if secret and mode & 0o077:
            out.append(Finding(name, WARN, "%s loads, but others may read it (%s)" % (path, stat.filemode(mode)),
                               "chmod 600 %s" % path))
        else:
            out.append(Finding(name, OK, "%s loads" % path))
    if config.backend_key is None and config.backend_hmac_key is None:
        out.append(Finding("commands", OK, "no backend key: the unit accepts no downlink command (by design)"))
    return out


# ---- state directory, control socket ---------------------------------------------------------

def filesystem_of(path: str) -> str:
    """The filesystem type of the mount holding path (from /proc/self/mounts), "" if unknown."""
    real, best, kind = os.path.realpath(path), "", ""
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                parts = line.split()
                point = parts[1].replace("\\040", " ")
                if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, kind = point, parts[2]
    except OSError:
        return ""
    return kind


def check_state(config: Config) -> list[Finding]:
    path = Path(config.state)
    if path.exists() and not path.is_dir():
        return [Finding("state", FAIL, "%s exists and is not a directory" % path, "give a directory: --state DIR")]
    existing = path
    while not existing.exists():
        existing = existing.parent
    if existing != path and not os.access(existing, os.W_OK | os.X_OK):
        return [Finding("state", FAIL, "%s does not exist and %s is not writable" % (path, existing),
                        "sudo install -d -o $USER %s" % path)]
    probe_dir = path if path.exists() else existing
    try:
        fd, name = tempfile.mkstemp(dir=probe_dir, prefix=".tcu-doctor-")
        try:
            os.write(fd, b"probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
        dir_fd = os.open(probe_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        if probe_dir != path:
            return [Finding("state", FAIL, "%s does not exist and cannot be created in %s: %s" % (
                path, probe_dir, err.strerror or err), "sudo install -d -o $USER %s (on a local filesystem)" % path)]
        return [Finding("state", FAIL, "cannot write and fsync a file in %s: %s" % (path, err.strerror or err),
                        "make it writable by this user (sudo chown -R $USER %s), on a local filesystem" % path)]
    kind = filesystem_of(str(probe_dir))
    free_mb = shutil.disk_usage(probe_dir).free / 1e6
    detail = "%s %s (%s, %.0f MB free); write + fsync work" % (
        path, "writable" if path.exists() else "will be created", kind or "filesystem unknown", free_mb)
    if kind in VOLATILE_FS:
        return [Finding("state", WARN, detail, "the outbox, command counter and audit log are lost at power-off "
                        "on %s: put --state on persistent storage" % kind)]
    if kind in NETWORK_FS:
        return [Finding("state", WARN, detail, "a network filesystem may not honour fsync: use local storage")]
    if free_mb < 50:
        return [Finding("state", WARN, detail, "free some space: the outbox grows while the broker is away")]
    return [Finding("state", OK, detail)]


def check_control(config: Config) -> Finding:
    path = config.control_path
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        return Finding("control", FAIL, "%s: %d bytes, longer than a Unix socket path may be (%d)"
                       % (path, len(os.fsencode(path)), SUN_PATH_MAX), "give a shorter --control path")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent) and parent != os.path.abspath(config.state):
            return Finding("control", FAIL, "%s: its directory %s does not exist" % (path, parent),
                           "create it, or give --control in an existing directory")
        return Finding("control", OK, "%s is free" % path)
    except OSError as err:
        return Finding("control", FAIL, "%s: %s" % (path, err.strerror), "give --control a path in a directory")
    if not stat.S_ISSOCK(mode):
        return Finding("control", FAIL, "%s exists and is not a socket" % path,
                       "move that file away or give another --control")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return Finding("control", OK, "%s: a stale socket (no unit listens), will be replaced" % path)
    return Finding("control", FAIL, "%s: a unit is already running on it" % path,
                   "stop it (`tcu status --control %s` shows it) or give another --control" % path)


# ---- clock, GPIO -----------------------------------------------------------------------------

def build_time() -> float:
    """When this software was built or installed: its newest source file. OSError if this
    user may not look (a checkout in another user's private directory)."""
    here = Path(__file__).resolve().parent
    return max(p.stat().st_mtime for p in here.glob("*.py"))


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _clock_against_build(now: float) -> Finding:
    try:
        built = build_time()
    except OSError as err:
        return Finding("clock", WARN, "%s; the build date is unknown (%s: %s)" % (_stamp(now), err.filename,
                                                                                   err.strerror),
                       "run tcu doctor as the user that runs the unit")
    if now < built - 60:
        return Finding("clock", FAIL, "the clock says %s, before this software was built (%s)" % (
            _stamp(now), _stamp(built)), "set the time: sudo timedatectl set-ntp true (or date -s)")
    return Finding("clock", OK, "%s, after the build date" % _stamp(now))


def check_clock(now: float | None = None) -> list[Finding]:
    out = [_clock_against_build(time.time() if now is None else now)]
    if shutil.which("timedatectl"):
        try:
            result = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                                    capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as err:
            result = subprocess.CompletedProcess([], 1, "", str(err))
        answer = result.stdout.strip()
        if result.returncode == 0 and answer == "yes":
            out.append(Finding("ntp", OK, "NTP synchronised"))
        elif result.returncode == 0 and answer == "no":
            out.append(Finding("ntp", WARN, "NTP not synchronised: fixes and uplinks carry this clock's time",
                               "sudo timedatectl set-ntp true; `timedatectl timesync-status` shows why"))
        else:
            last = (result.stderr.strip().splitlines() or ["no answer"])[-1]
            out.append(Finding("ntp", WARN, "NTP state unknown (timedatectl: %s)" % last,
                               "make sure some NTP client keeps this clock right"))
    return out


def check_gpio(config: Config) -> list[Finding]:
    specs = [s for s in (config.indicator, *config.inputs) if s.startswith("gpio:")]
    if not specs:
        return []
    if importlib.util.find_spec("gpiozero") is None:
        return [Finding("gpio", FAIL, "%s need gpiozero, which is not installed" % ", ".join(specs),
                        "%s (and on the Pi: sudo apt install python3-lgpio)" % extra_hint("pi", "gpiozero"))]
    return [Finding("gpio", OK, "gpiozero present for %s" % ", ".join(specs))]


def run_checks(config: Config, window_s: float) -> list[Finding]:
    from tcu.tools.doctor_cmd import check_gps
    from tcu.tools.doctor_gpsd import check_gpsd
    from tcu.tools.doctor_modem import check_modem

    return [check_gps(config, window_s), *check_gpsd(config), *check_broker(config), *check_keys(config),
            *check_state(config), check_control(config), *check_clock(), *check_gpio(config), *check_modem(config)]
