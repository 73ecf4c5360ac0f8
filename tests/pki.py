"""A throwaway test PKI made with `cryptography` (no openssl CLI): a CA, a broker certificate
for 127.0.0.1/localhost, and client certificates that are good, expired, not yet valid, or
signed by a second, unrelated CA. EC P-256 throughout: every OpenSSL and Mosquitto accepts it."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UNIT_ID = "unit-0001"
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class KeyPair:
    """PEM paths of one certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca_cert: Path  # the CA the broker trusts and the clients verify the broker with
    other_ca_cert: Path  # an unrelated CA: trusting only it must refuse the broker
    server: KeyPair  # the broker: SAN IP 127.0.0.1 and DNS localhost
    client: KeyPair  # CN = UNIT_ID, valid now
    expired: KeyPair  # same CA and CN, not_valid_after yesterday
    not_yet_valid: KeyPair  # same CA and CN, not_valid_before tomorrow
    other_ca_client: KeyPair  # same CN, signed by the other CA


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tcu-emulator tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
    pair = KeyPair(directory / ("%s.crt" % stem), directory / ("%s.key" % stem))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return pair


def _ca(common_name: str, now: datetime.datetime) -> tuple[_Issuer, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _Issuer(name, key), cert


def _leaf(issuer: _Issuer, common_name: str, not_before: datetime.datetime, not_after: datetime.datetime,
          server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(issuer.name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=False, crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                              critical=False))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.DNSName("localhost")]), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer.key, hashes.SHA256()), key


def make_pki(directory: Path, unit_id: str = UNIT_ID) -> Pki:
    """Write every certificate and key as PEM into directory (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca, ca_cert = _ca("tcu test CA", now)
    other, other_cert = _ca("unrelated test CA", now)
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "other-ca.crt").write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    return Pki(
        ca_cert=directory / "ca.crt",
        other_ca_cert=directory / "other-ca.crt",
        server=_write(directory, "server", *_leaf(ca, "localhost", now - DAY, now + 30 * DAY, server=True)),
        client=_write(directory, "client", *_leaf(ca, unit_id, now - DAY, now + 30 * DAY, server=False)),
        expired=_write(directory, "expired", *_leaf(ca, unit_id, now - 30 * DAY, now - DAY, server=False)),
        not_yet_valid=_write(directory, "not-yet-valid",
                             *_leaf(ca, unit_id, now + DAY, now + 30 * DAY, server=False)),
        other_ca_client=_write(directory, "other-ca-client",
                               *_leaf(other, unit_id, now - DAY, now + 30 * DAY, server=False)),
    )
