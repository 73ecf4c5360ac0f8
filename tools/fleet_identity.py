"""Each fleet unit's keys and TLS identity: one file for all, a pattern with {unit}, or a
directory holding UNIT.crt / UNIT.key; and the backend key that signs the scenario's commands
(a fresh one, given to the units, when none is named)."""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tcu.emulator.crypto import ed25519_verify, load_e2e_key, load_private_key
from tcu.emulator.uplink import TlsOptions
from tcu.firmware.errors import UsageError
from tcu.protocol import cose
from tcu.protocol.commands import BackendKey, CommandVerifier


def per_unit(pattern: str | None, suffix: str, what: str, prefix: str, first: int) -> Callable[[str], str | None]:
    """unit id -> its file: PATTERN with {unit}, DIR/UNIT.suffix, or one FILE for all. The
    first unit's file must exist (a typo stops the start, not the 500th connection)."""
    if pattern is None:
        return lambda unit: None
    if "{unit}" in pattern:
        def path(unit: str) -> str | None:
            return pattern.replace("{unit}", unit)
    elif os.path.isdir(pattern):
        def path(unit: str) -> str | None:
            return os.path.join(pattern, unit + suffix)
    else:
        def path(unit: str) -> str | None:
            return pattern
    sample = path("%s%05d" % (prefix, first))
    if sample is None or not os.path.isfile(sample):
        raise UsageError("%s %s: no such file for the first unit: %s" % (what, pattern, sample))
    return path


def tls_identities(ca: str | None, cert: str | None, key: str | None, prefix: str,
                   first: int) -> Callable[[str], TlsOptions | None]:
    if ca is not None and not os.path.isfile(ca):
        raise UsageError("--ca %s: no such file" % ca)
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    certs = per_unit(cert, ".crt", "--tls-cert", prefix, first)
    keys = per_unit(key, ".key", "--tls-key", prefix, first)
    if ca is None and cert is None:
        return lambda unit: None
    return lambda unit: TlsOptions(ca, certs(unit), keys(unit))


def e2e_keys(pattern: str | None, prefix: str, first: int) -> Callable[[str], bytes | None]:
    path = per_unit(pattern, ".key", "--e2e-key", prefix, first)
    if pattern is None:
        return lambda unit: None
    cache: dict[str, bytes] = {}

    def key(unit: str) -> bytes | None:
        file = path(unit)
        if file is None:
            return None
        if file not in cache:
            cache[file] = load_e2e_key(file)
        return cache[file]

    key("%s%05d" % (prefix, first))  # a bad key stops the start
    return key


def backend_keys(pem: str | None, needed: bool) -> tuple[Ed25519PrivateKey | None, Ed25519PublicKey | None]:
    """The backend's signing key and the public key the units trust (None, None: no commands)."""
    if pem is not None:
        private = load_private_key(pem)
    elif needed:
        private = Ed25519PrivateKey.generate()
    else:
        return None, None
    return private, private.public_key()


def verifiers(public: Ed25519PublicKey | None) -> Callable[[str], CommandVerifier | None]:
    if public is None:
        return lambda unit: None
    keys = [BackendKey(b"backend", cose.ALG_EDDSA, public)]
    return lambda unit: CommandVerifier(unit, keys, ed25519_verify)
