"""CPython crypto glue for the portable COSE code: Ed25519 signatures, AES-GCM sealing of
location payloads end to end (unit -> backend, opaque to the broker), and key files.

Kept out of protocol/ because it needs `cryptography`, which MicroPython does not have.
`cryptography` (~6 MB resident) is imported only by the functions that use it: a unit with
no end-to-end key and no Ed25519 backend key (HMAC commands only) never loads it (issue 7).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tcu.firmware.errors import UsageError
from tcu.protocol import cose

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def ed25519_verify(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def seal_uplink(payload: bytes, key: bytes, topic: str) -> bytes:
    """payload as a COSE_Encrypt0 (AES-GCM, random 96-bit IV) bound to its topic."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    alg = cose.ALG_A256GCM if len(key) == 32 else cose.ALG_A128GCM
    return cose.encrypt0(payload, alg, os.urandom(12), topic.encode(),
                         lambda iv, plain, aad: AESGCM(key).encrypt(iv, plain, aad))


def open_uplink(sealed: bytes, key: bytes, topic: str) -> bytes:
    """The plaintext of seal_uplink's output; ProtocolError if it was altered or misrouted."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    alg = cose.ALG_A256GCM if len(key) == 32 else cose.ALG_A128GCM

    def open_(iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return AESGCM(key).decrypt(iv, ciphertext, aad)
        except InvalidTag:
            raise cose.CoseError("sealed uplink does not authenticate") from None

    return cose.decrypt0(sealed, alg, topic.encode(), open_)


def _why(err: Exception, pem: bool = False) -> str:
    """An error's reason without the path (the message names it once) and without
    cryptography's FAQ link (it tells a user nothing about their file)."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    if pem:
        return "not a PEM key, or a damaged one (expected -----BEGIN ... KEY----- lines, as tcu backend keygen writes)"
    return str(err)


def load_e2e_key(path: str | Path, what: str = "end-to-end key") -> bytes:
    """A 16- or 32-byte key from a file of 32 or 64 hex digits (AES-128/256, or an HMAC key)."""
    try:
        text = Path(path).read_text().strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError) as err:
        raise UsageError("cannot read the %s %s: %s" % (what, path, _why(err) if isinstance(err, OSError)
                                                         else "expected 32 or 64 hex digits")) from None
    if len(key) not in (16, 32):
        raise UsageError("the %s %s must be 32 or 64 hex digits, not %d bytes" % (what, path, len(key)))
    return key


def is_sealed(payload: bytes) -> bool:
    """A COSE_Encrypt0 (tag 16) rather than a plain uplink (an array)."""
    return payload[:1] == b"\xd0"


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as err:
        raise UsageError("cannot read the backend public key %s: %s" % (path, _why(err, pem=True))) from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError("%s is not an Ed25519 public key" % path)
    return key


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise UsageError("cannot read the backend private key %s: %s" % (
            path, _why(err, pem=True) if not isinstance(err, TypeError) else "it is encrypted: "
            "tcu needs an unencrypted PEM key")) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError("%s is not an Ed25519 private key" % path)
    return key


