"""A self-made test PKI for the simulator's mutual TLS.

One root CA signs a server certificate for ``127.0.0.1``/``::1``/
``localhost`` and client certificates whose subject CN is chosen
(``INSI-AUTO``, ``INSI-MANU`` or anything else, to draw ``DESIR_560``)
with an OU (the ``Emetteur`` INSi expects). Each client comes as PEM
certificate and key, and as a PKCS#12 bundle with its password in a
file beside it, the two shapes the worker accepts. Test material only:
keys are written unencrypted, readable by the owner alone.

Files in the directory::

    ca.pem  ca.key.pem  server.pem  server.key.pem
    client-<cn>.pem  client-<cn>.key.pem  client-<cn>.p12
    client-<cn>.p12.pass
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import secrets
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

#: the two CNs INSi admits, and one it refuses
DEFAULT_CLIENT_CNS = ("INSI-AUTO", "INSI-MANU", "INSI-AUTRE")

DEFAULT_OU = "SIMULATEUR-000001"

_ORGANISATION = "ins-worker test PKI"
_VALIDITY = datetime.timedelta(days=365)
#: a PKI that expires sooner than this is made again
_MARGIN = datetime.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """One client certificate, in both shapes."""

    common_name: str
    cert: Path
    key: Path
    pkcs12: Path
    password_file: Path

    @property
    def password(self) -> bytes:
        """The PKCS#12 password, read from its file."""
        return self.password_file.read_bytes().strip()


@dataclass(frozen=True, slots=True)
class SimulatorPki:
    """Paths of a test PKI written by :func:`make_pki`."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: Mapping[str, ClientCredentials]

    def client(self, common_name: str) -> ClientCredentials:
        """The credentials of the client with ``common_name``."""
        return self.clients[common_name]

    def server_context(self) -> ssl.SSLContext:
        """The simulator's side: this server certificate, client required."""
        context = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_cert)
        )
        context.load_cert_chain(str(self.server_cert), str(self.server_key))
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self, common_name: str | None) -> ssl.SSLContext:
        """A client trusting the test CA, with ``common_name``'s cert."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        if common_name is not None:
            creds = self.client(common_name)
            context.load_cert_chain(str(creds.cert), str(creds.key))
        return context


def _slug(common_name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", common_name.lower()).strip("-")


def pki_paths(
    directory: Path, client_cns: Iterable[str] = DEFAULT_CLIENT_CNS
) -> SimulatorPki:
    """Where :func:`make_pki` writes (or wrote) each file."""
    clients = {
        cn: ClientCredentials(
            cn,
            directory / f"client-{_slug(cn)}.pem",
            directory / f"client-{_slug(cn)}.key.pem",
            directory / f"client-{_slug(cn)}.p12",
            directory / f"client-{_slug(cn)}.p12.pass",
        )
        for cn in client_cns
    }
    return SimulatorPki(
        directory,
        directory / "ca.pem",
        directory / "ca.key.pem",
        directory / "server.pem",
        directory / "server.key.pem",
        clients,
    )


def make_pki(
    directory: Path,
    client_cns: Iterable[str] = DEFAULT_CLIENT_CNS,
    ou: str = DEFAULT_OU,
) -> SimulatorPki:
    """Write a test PKI under ``directory``, or reuse the one there.

    A file already present and valid for another week is kept; the
    whole PKI is made again when the CA is missing or about to expire.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = pki_paths(directory, client_cns)
    now = datetime.datetime.now(datetime.UTC)

    fresh = not _usable(paths.ca_cert, paths.ca_key, now)
    if fresh:
        ca_key, ca_cert = _make_ca(now)
        _write_pair(paths.ca_cert, paths.ca_key, ca_cert, ca_key)
    else:
        ca_key, ca_cert = _load_pair(paths.ca_cert, paths.ca_key)

    if fresh or not _usable(paths.server_cert, paths.server_key, now):
        key, cert = _make_server(ca_key, ca_cert, now)
        _write_pair(paths.server_cert, paths.server_key, cert, key)

    for creds in paths.clients.values():
        if fresh or not _usable(creds.cert, creds.key, now) or not (
            creds.pkcs12.exists() and creds.password_file.exists()
        ):
            _make_client(creds, ou, ca_key, ca_cert, now)

    logger.info(
        "simulator_pki_ready fresh=%s clients=%d", fresh, len(paths.clients)
    )
    return paths


def _usable(cert_path: Path, key_path: Path, now: datetime.datetime) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_after_utc - _MARGIN > now


def _load_pair(
    cert_path: Path, key_path: Path
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{key_path} is not an RSA key")
    return key, x509.load_pem_x509_certificate(cert_path.read_bytes())


def _write_private(path: Path, data: bytes) -> None:
    # keys and passwords: owner only, even though they are test material
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _write_pair(
    cert_path: Path,
    key_path: Path,
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _name(common_name: str, ou: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
    ]
    if ou is not None:
        attributes.append(
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)
        )
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: rsa.RSAPrivateKey,
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + _VALIDITY)
    )


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _make_ca(
    now: datetime.datetime,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _new_key()
    name = _name("ins-worker test root CA")
    cert = (
        _builder(name, name, key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    subject: x509.Name,
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    now: datetime.datetime,
) -> tuple[rsa.RSAPrivateKey, x509.CertificateBuilder]:
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()
            ),
            critical=False,
        )
    )
    return key, builder


def _make_server(
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    now: datetime.datetime,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key, builder = _leaf(_name("localhost"), ca_key, ca_cert, now)
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        builder.add_extension(x509.SubjectAlternativeName(names), False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _make_client(
    creds: ClientCredentials,
    ou: str,
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    now: datetime.datetime,
) -> None:
    key, builder = _leaf(_name(creds.common_name, ou), ca_key, ca_cert, now)
    cert = builder.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
    ).sign(ca_key, hashes.SHA256())
    _write_pair(creds.cert, creds.key, cert, key)

    password = secrets.token_urlsafe(18).encode()
    bundle = pkcs12.serialize_key_and_certificates(
        creds.common_name.encode(),
        key,
        cert,
        [ca_cert],
        serialization.BestAvailableEncryption(password),
    )
    _write_private(creds.pkcs12, bundle)
    _write_private(creds.password_file, password + b"\n")
