"""COSE (RFC 9052) for the downlink and end-to-end payloads: COSE_Sign1, COSE_Mac0 and
COSE_Encrypt0, built on the strict CBOR subset. Portable (MicroPython): the structures are
here, the primitives are passed in (Ed25519 verify, AES-GCM), except HMAC-SHA256, which
hashlib provides everywhere. The tests check interoperability with pycose.

The algorithm a message claims is never trusted on its own: the caller's key fixes the
algorithm, and a message whose protected header names another one is refused (the classic
"algorithm swap" that verifies an HMAC keyed with a public key).
"""

import hashlib

from ..firmware.errors import ProtocolError
from . import cbor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

TAG_ENCRYPT0 = 16
TAG_MAC0 = 17
TAG_SIGN1 = 18

ALG_EDDSA = -8
ALG_HMAC_256_256 = 5
ALG_A128GCM = 1
ALG_A256GCM = 3

H_ALG = 1
H_KID = 4
H_IV = 5

MAX_COSE_SIZE = 1024


class CoseError(ProtocolError):
    """A COSE message is malformed, uses another algorithm, or fails verification."""


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) over SHA-256, by hand: MicroPython has hashlib but no hmac module."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + data).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0


def _protected(alg: int) -> bytes:
    return cbor.encode({H_ALG: alg})


def _sig_structure(context: str, protected: bytes, aad: bytes, payload: bytes) -> bytes:
    return cbor.encode([context, protected, aad, payload])


def sign1(payload: bytes, alg: int, kid: bytes, aad: bytes, sign: "Callable[[bytes], bytes]") -> bytes:
    """COSE_Sign1 (tagged) over payload, bound to aad; sign(to_be_signed) -> signature."""
    protected = _protected(alg)
    signature = sign(_sig_structure("Signature1", protected, aad, payload))
    return cbor.encode(cbor.Tagged(TAG_SIGN1, [protected, {H_KID: kid}, payload, signature]))


def mac0(payload: bytes, kid: bytes, aad: bytes, key: bytes) -> bytes:
    """COSE_Mac0 (tagged) with HMAC 256/256 over payload, bound to aad."""
    protected = _protected(ALG_HMAC_256_256)
    tag = hmac_sha256(key, _sig_structure("MAC0", protected, aad, payload))
    return cbor.encode(cbor.Tagged(TAG_MAC0, [protected, {H_KID: kid}, payload, tag]))


class Envelope:
    """A parsed, not yet verified, COSE_Sign1 or COSE_Mac0."""

    __slots__ = ("tag", "protected", "alg", "kid", "payload", "proof")

    def __init__(self, tag: int, protected: bytes, alg: int, kid: bytes, payload: bytes, proof: bytes) -> None:
        self.tag = tag
        self.protected = protected
        self.alg = alg
        self.kid = kid
        self.payload = payload
        self.proof = proof

    def to_be_verified(self, aad: bytes) -> bytes:
        context = "Signature1" if self.tag == TAG_SIGN1 else "MAC0"
        return _sig_structure(context, self.protected, aad, self.payload)


def parse(data: bytes) -> Envelope:
    """Parse a tagged COSE_Sign1 or COSE_Mac0 strictly; verification is the caller's next step."""
    item = cbor.decode(data, max_size=MAX_COSE_SIZE, max_depth=3, tags=(TAG_SIGN1, TAG_MAC0))
    if not isinstance(item, cbor.Tagged):
        raise CoseError("not a tagged COSE_Sign1 or COSE_Mac0")
    body = item.value
    if not isinstance(body, list) or len(body) != 4:
        raise CoseError("a COSE message is an array of 4 items")
    protected, unprotected, payload, proof = body
    if not all(isinstance(x, bytes) for x in (protected, payload, proof)) or not isinstance(unprotected, dict):
        raise CoseError("COSE fields have the wrong types")
    header = cbor.decode(protected, max_size=64, max_depth=1) if protected else {}
    if not isinstance(header, dict) or set(header) != {H_ALG} or not isinstance(header[H_ALG], int):
        raise CoseError("the protected header must hold exactly the algorithm")
    if set(unprotected) - {H_KID} or not isinstance(unprotected.get(H_KID, b""), bytes):
        raise CoseError("the unprotected header may hold only a key id")
    return Envelope(item.tag, protected, header[H_ALG], unprotected.get(H_KID, b""), payload, proof)


def verify(envelope: Envelope, aad: bytes, alg: int, key: "Any",
           verify_signature: "Callable[[Any, bytes, bytes], bool] | None" = None) -> bytes:
    """The payload if envelope is authentic under (alg, key) and aad; CoseError otherwise.

    alg is the key's algorithm, fixed by the unit's configuration, not by the message.
    verify_signature(key, signature, data) -> bool checks EdDSA where the platform can.
    """
    if envelope.alg != alg:
        raise CoseError("algorithm %d does not match the key's %d" % (envelope.alg, alg))
    data = envelope.to_be_verified(aad)
    if alg == ALG_HMAC_256_256 and envelope.tag == TAG_MAC0:
        if constant_time_equal(hmac_sha256(key, data), envelope.proof):
            return envelope.payload
    elif alg == ALG_EDDSA and envelope.tag == TAG_SIGN1:
        if verify_signature is None:
            raise CoseError("this platform cannot verify EdDSA signatures")
        if verify_signature(key, envelope.proof, data):
            return envelope.payload
    else:
        raise CoseError("algorithm %d is not allowed in this message type" % alg)
    raise CoseError("the signature or MAC does not verify")


def encrypt0(plaintext: bytes, alg: int, iv: bytes, aad: bytes,
             seal: "Callable[[bytes, bytes, bytes], bytes]") -> bytes:
    """COSE_Encrypt0 (tagged); seal(iv, plaintext, enc_structure) -> ciphertext with tag."""
    protected = _protected(alg)
    enc_structure = cbor.encode(["Encrypt0", protected, aad])
    return cbor.encode(cbor.Tagged(TAG_ENCRYPT0, [protected, {H_IV: iv}, seal(iv, plaintext, enc_structure)]))


def decrypt0(data: bytes, alg: int, aad: bytes, open_: "Callable[[bytes, bytes, bytes], bytes]") -> bytes:
    """The plaintext of a COSE_Encrypt0 under alg; open_(iv, ciphertext, enc_structure)."""
    item = cbor.decode(data, max_size=MAX_COSE_SIZE, max_depth=3, tags=(TAG_ENCRYPT0,))
    if not isinstance(item, cbor.Tagged) or not isinstance(item.value, list) or len(item.value) != 3:
        raise CoseError("not a tagged COSE_Encrypt0")
    protected, unprotected, ciphertext = item.value
    if not isinstance(protected, bytes) or not isinstance(ciphertext, bytes) or not isinstance(unprotected, dict):
        raise CoseError("COSE_Encrypt0 fields have the wrong types")
    header = cbor.decode(protected, max_size=64, max_depth=1)
    if header != {H_ALG: alg}:
        raise CoseError("COSE_Encrypt0 algorithm is not %d" % alg)
    iv = unprotected.get(H_IV)
    if not isinstance(iv, bytes) or len(iv) != 12:
        raise CoseError("COSE_Encrypt0 needs a 12-byte IV")
    return open_(iv, ciphertext, cbor.encode(["Encrypt0", protected, aad]))
