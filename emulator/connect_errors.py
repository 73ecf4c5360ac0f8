"""Why a connection to a broker failed, in words that point at the likely mistake.

The commonest is the scheme: mqtts:// against a plain MQTT port fails in the TLS handshake
(the broker reads the ClientHello as a malformed packet and resets the connection, or
answers in plaintext: "wrong version number"), and mqtt:// against a TLS port gets no CONNACK
(the TLS listener closes on a CONNECT it cannot read as a ClientHello, or waits for more).
Neither is a refusal by the broker. A handshake that fails on a certificate (verification, a
TLS alert) is a TLS port's answer, and says so without the scheme hint.
"""

from __future__ import annotations

import ssl

from tcu.firmware.errors import LinkError

PLAIN_HINT = "is it a plain MQTT port (use mqtt://)?"
TLS_HINT = "is it a TLS port (use mqtts://)?"
# OpenSSL reasons for a peer that does not speak TLS at all (not a certificate or alert).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE", "HTTP_REQUEST",
            "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL")


def _why(err: BaseException) -> str:
    if isinstance(err, ssl.SSLError):
        return str(err.reason or err).replace("_", " ").lower() if err.reason else str(err)
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def not_tls(err: BaseException) -> bool:
    """Whether a failure of the TLS handshake says the peer does not speak TLS."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return False
    if isinstance(err, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError)):
        return True
    if isinstance(err, ssl.SSLError):
        return (err.reason or "") in _NOT_TLS or "EOF" in str(err)
    return isinstance(err, TimeoutError) and "handshake" in str(err)


def connect_failed(url: str, host: str, port: int, tls: bool, err: BaseException) -> LinkError:
    """The broker could not be reached, or its TLS handshake failed."""
    if tls and not_tls(err):
        return LinkError("the TLS handshake with %s:%d failed: %s; %s" % (host, port, _why(err), PLAIN_HINT))
    if isinstance(err, ssl.SSLError):
        return LinkError("broker %s refused TLS: %s" % (url, _why(err)))
    return LinkError("broker %s did not answer: %s" % (url, _why(err)))


def no_connack(url: str, tls: bool, closed: bool, timeout_s: float) -> str:
    """What to say when CONNECT got no CONNACK: the broker closed the connection, or was silent."""
    if closed:
        if tls:  # TLS 1.3 checks the client's certificate after the handshake: a refusal shows so
            return ("broker %s closed the connection before CONNACK (a refused client certificate, or a "
                    "maximum packet size below the CONNECT's, does that: see its log)" % url)
        return ("broker %s closed the connection before CONNACK: %s (a maximum packet size below the "
                "CONNECT's does that too: see its log)" % (url, TLS_HINT))
    return "broker %s did not answer CONNECT within %.0f s (is it an MQTT broker?%s)" % (
        url, timeout_s, "" if tls else " a TLS port needs mqtts://")
