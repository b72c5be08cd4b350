"""Certificates for the TLS tests, made for each run with ``cryptography``.

``make_pki(directory)`` writes a CA, a server certificate for 127.0.0.1, one for another host, a
client certificate whose key is encrypted with ``KEY_PASSWORD``, and a second CA that signed none
of them. Keys are P-256 (EC), private keys PKCS#8 PEM; the server keys are not encrypted.

Used by ``tests/tls_tansu.py`` (stunnel in front of Tansu, for ``test_tls.py``, ``test_sasl.py``
and ``test_secrets.py``; its ``pki`` fixture serves every module) and by ``tests/apache_kafka/test_tls.py``
(Apache Kafka, which reads PEM key stores itself and accepts RSA, DSA and EC PKCS#8 keys in them).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The address the servers' certificate is for (an IP SAN only: ``localhost`` is not in it).
HOST = "127.0.0.1"
#: The host name of ``Pki.wrong_host_cert``.
WRONG_HOST = "kafka.invalid"
#: The encrypted client key's password: it may show up nowhere.
KEY_PASSWORD = "key-pass-3f9c1d7e-never-log-me"


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    """A CA that signed nothing the servers present."""
    server_cert: Path
    """Signed by ``ca``, for ``HOST`` (IP SAN 127.0.0.1, no DNS name)."""
    server_key: Path
    """Not encrypted."""
    wrong_host_cert: Path
    """Signed by ``ca``, for ``WRONG_HOST`` rather than 127.0.0.1."""
    wrong_host_key: Path
    client_cert: Path
    client_key: Path
    """Encrypted with ``KEY_PASSWORD``."""


class _Issuer:
    """A CA that signs certificates (P-256 keys, valid for a day)."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = self._sign(
            self.name,
            self.key.public_key(),
            [
                (x509.BasicConstraints(ca=True, path_length=None), True),
                (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
            ],
        )

    def issue(
        self, common_name: str, extensions: list[tuple[x509.ExtensionType, bool]]
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._sign(name, key.public_key(), extensions), key

    def _sign(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.name).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        )  # fmt: skip
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self.key, hashes.SHA256())


def _write_pem(path: Path, item: x509.Certificate | ec.EllipticCurvePrivateKey, password: str | None = None) -> Path:
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        protection = (
            serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
        )
        path.write_bytes(item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, protection))
    return path


def _server_extensions(san: x509.GeneralName) -> list[tuple[x509.ExtensionType, bool]]:
    return [
        (x509.SubjectAlternativeName([san]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ]


def make_pki(directory: Path) -> Pki:
    """New keys and certificates, written into ``directory`` (which must exist)."""
    ca, impostor = _Issuer("sentinel-durable test CA"), _Issuer("impostor CA")
    server = ca.issue(HOST, _server_extensions(x509.IPAddress(ipaddress.ip_address(HOST))))
    wrong_host = ca.issue(WRONG_HOST, _server_extensions(x509.DNSName(WRONG_HOST)))
    client = ca.issue("alice", [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    return Pki(
        ca=_write_pem(directory / "ca.pem", ca.certificate),
        other_ca=_write_pem(directory / "impostor-ca.pem", impostor.certificate),
        server_cert=_write_pem(directory / "server.pem", server[0]),
        server_key=_write_pem(directory / "server.key", server[1]),
        wrong_host_cert=_write_pem(directory / "wrong-host.pem", wrong_host[0]),
        wrong_host_key=_write_pem(directory / "wrong-host.key", wrong_host[1]),
        client_cert=_write_pem(directory / "client.pem", client[0]),
        client_key=_write_pem(directory / "client.key", client[1], password=KEY_PASSWORD),
    )
