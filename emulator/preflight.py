"""Checks made before a command starts anything (a thread, a socket, an outbox): the broker
URL means what it says and every TLS file it needs can be read and parsed.

Without them a missing CA file was a traceback in the link's thread that named no file, and
`tcu replay` then reported "0 uplinks acknowledged" and exited 0; options that do nothing
(`--tls-ca` with mqtt://, a path after the port) were ignored without a word.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

from tcu.emulator.uplink import TlsOptions, parse_broker_url, redact_url
from tcu.firmware.errors import UsageError

# (label, path): the label names where the path came from (an option, or a config key)
Named = tuple[str, str | None]


def check_broker_url(url: str, name: str = "--broker") -> None:
    """A path, query or fragment after HOST[:PORT] is refused: MQTT has no use for one."""
    parse_broker_url(url)
    parts = urlsplit(url)
    extra = (parts.path if parts.path not in ("", "/") else "") + ("?" + parts.query if parts.query else "") \
        + ("#" + parts.fragment if parts.fragment else "")
    if extra:  # the message never shows a password from the URL
        host = parts.netloc.rpartition("@")[2]
        raise UsageError("%s %s: %r after the port means nothing to MQTT; give %s://%s" % (
            name, redact_url(url), extra, parts.scheme, host))


def _readable(label: str, path: str) -> None:
    try:
        with open(path, "rb") as file:
            file.read(1)
    except FileNotFoundError:
        raise UsageError("%s %s: no such file" % (label, path)) from None
    except IsADirectoryError:
        raise UsageError("%s %s: a directory, not a file" % (label, path)) from None
    except OSError as err:
        raise UsageError("%s %s: cannot read it: %s" % (label, path, err.strerror)) from None


def check_tls(url: str, ca: Named, cert: Named, key: Named) -> None:
    """Every TLS file exists, is readable and parses; none is given for a plain mqtt:// URL."""
    given = [(label, path) for label, path in (ca, cert, key) if path]
    if not parse_broker_url(url).tls:
        if given:
            raise UsageError("%s is for mqtts:// only, and the broker is %s: use mqtts://... or drop it"
                             % (" and ".join(label for label, _ in given), redact_url(url)))
        return
    for label, path in given:
        assert path is not None
        _readable(label, path)
    if cert[1] is None and key[1] is not None:
        raise UsageError("%s %s needs %s (the certificate it belongs to)" % (key[0], key[1], cert[0]))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca[1]:
        try:
            context.load_verify_locations(cafile=ca[1])
        except ssl.SSLError as err:
            raise UsageError("%s %s: no PEM certificate in it (%s)" % (ca[0], ca[1], err.reason or err)) from None
    if cert[1]:
        try:
            context.load_cert_chain(cert[1], key[1])
        except ssl.SSLError as err:
            what = "%s %s" % (cert[0], cert[1]) + (" with %s %s" % (key[0], key[1]) if key[1] else "")
            raise UsageError("%s: not a PEM certificate and its private key, or they do not match (%s)"
                             % (what, err.reason or err)) from None


def check_link_options(url: str, tls: TlsOptions | None, labels: Sequence[str] = ("--tls-ca", "--tls-cert",
                                                                                  "--tls-key")) -> None:
    """The broker URL and TLS options of a command line, before anything starts."""
    check_broker_url(url)
    tls = tls or TlsOptions()
    check_tls(url, (labels[0], tls.ca_file), (labels[1], tls.cert_file), (labels[2], tls.key_file))
