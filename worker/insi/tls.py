"""Mutual TLS toward INSi: the client's SSLContext and its certificate.

The client certificate comes from PEM files (chain, key, optional key
password file) or from a PKCS#12 bundle (and its password file), all
mounted secrets. The server must chain to the configured CA bundle and
match its host name, over TLS 1.2 or later.

A PKCS#12 bundle is read with ``cryptography``; since ``ssl`` only loads
keys from files, the key is written, encrypted under a one-time random
password, to an anonymous in-memory file (``memfd``), loaded, and the
file closed at once: the key never reaches a disk in the clear. Where
``memfd`` is missing, a 0600 file in a private temporary folder stands
in and is deleted right after loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from worker.errors import ConfigurationError

if TYPE_CHECKING:
    from worker.settings import Settings

logger = logging.getLogger(__name__)

#: the only subject CNs INSi accepts (any other draws DESIR_560)
ALLOWED_CNS = frozenset({"INSI-AUTO", "INSI-MANU"})


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """What the client certificate says, for checks and the audit trail.

    ``subject_ou`` is what certificate mode sends as ``Emetteur``.
    """

    subject_cn: str | None
    subject_ou: str | None
    issuer_cn: str | None
    serial: str
    sha256: str
    not_before: datetime
    not_after: datetime

    @classmethod
    def from_x509(cls, cert: x509.Certificate) -> ClientCertificate:
        """Read the fields the worker uses from a parsed certificate."""
        return cls(
            subject_cn=_name_value(cert.subject, NameOID.COMMON_NAME),
            subject_ou=_name_value(
                cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME
            ),
            issuer_cn=_name_value(cert.issuer, NameOID.COMMON_NAME),
            serial=f"{cert.serial_number:x}",
            sha256=hashlib.sha256(
                cert.public_bytes(serialization.Encoding.DER)
            ).hexdigest(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    def seconds_left(self, now: datetime) -> float:
        """Seconds until expiry (negative once expired)."""
        return (self.not_after - now).total_seconds()


@dataclass(frozen=True, slots=True)
class ClientTls:
    """An SSLContext for INSi and the client certificate it presents."""

    context: ssl.SSLContext
    certificate: ClientCertificate | None


def _name_value(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def _read_secret(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the {what} {path}: {exc.strerror}"
        ) from None
    # Mounted secrets often end with a newline that is not the password.
    return data.rstrip(b"\r\n")


def check_for_production(info: ClientCertificate, now: datetime) -> None:
    """Refuse a certificate INSi would refuse, before the first call.

    The messages name the rule, never the certificate's subject: a
    wrong certificate may well be a person's.
    """
    if info.subject_cn not in ALLOWED_CNS:
        raise ConfigurationError(
            "the INSi client certificate's subject CN is not INSI-AUTO "
            "or INSI-MANU (INSi would answer DESIR_560)"
        )
    if now < info.not_before:
        raise ConfigurationError(
            "the INSi client certificate is not valid before "
            f"{info.not_before:%Y-%m-%dT%H:%M:%SZ}"
        )
    if now >= info.not_after:
        raise ConfigurationError(
            "the INSi client certificate expired on "
            f"{info.not_after:%Y-%m-%dT%H:%M:%SZ}"
        )


def server_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify INSi's certificate and host name, TLS 1.2 or later.

    Without ``ca_file`` the system's trust store is used; the IGC-Santé
    roots are usually not in it, so production configures the bundle.
    """
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=None if ca_file is None else str(ca_file),
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the INSi CA bundle {ca_file}: {exc}"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@contextlib.contextmanager
def _transient_file(data: bytes) -> Iterator[str]:
    # An anonymous memory file: nothing on disk, gone when closed.
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("insi-client", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return

    with tempfile.TemporaryDirectory(prefix="insi-tls-") as folder:
        path = Path(folder) / "client.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        try:
            yield str(path)
        finally:
            path.unlink(missing_ok=True)


def _load_pkcs12(
    context: ssl.SSLContext, bundle: Path, password_file: Path | None
) -> ClientCertificate:
    data = _read_secret(bundle, "PKCS#12 bundle")
    password = (
        None if password_file is None
        else _read_secret(password_file, "PKCS#12 password file")
    )
    try:
        key, cert, chain = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        raise ConfigurationError(
            f"cannot open the PKCS#12 bundle {bundle}: wrong password or "
            "not PKCS#12"
        ) from None
    if key is None or cert is None:
        raise ConfigurationError(
            f"the PKCS#12 bundle {bundle} lacks a key or a certificate"
        )

    one_time = secrets.token_urlsafe(32).encode()
    pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain]
    ) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time),
    )
    with _transient_file(pem) as path:
        try:
            context.load_cert_chain(path, password=one_time)
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"cannot use the PKCS#12 bundle {bundle}: {exc.reason}"
            ) from None
    return ClientCertificate.from_x509(cert)


def _load_pem(
    context: ssl.SSLContext,
    cert_file: Path,
    key_file: Path | None,
    password_file: Path | None,
) -> ClientCertificate:
    certs_pem = _read_secret(cert_file, "client certificate")
    try:
        leaf = x509.load_pem_x509_certificates(certs_pem)[0]
    except ValueError:
        raise ConfigurationError(
            f"{cert_file} holds no PEM certificate"
        ) from None
    password = (
        None if password_file is None
        else _read_secret(password_file, "key password file")
    )
    try:
        context.load_cert_chain(
            str(cert_file),
            None if key_file is None else str(key_file),
            password=password,
        )
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror
        raise ConfigurationError(
            f"cannot use the client certificate {cert_file} and key "
            f"{key_file}: {reason}"
        ) from None
    return ClientCertificate.from_x509(leaf)


def client_context(
    *,
    ca_file: Path | None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    key_password_file: Path | None = None,
    pkcs12_file: Path | None = None,
    pkcs12_password_file: Path | None = None,
) -> ClientTls:
    """The SSLContext for INSi, with the client certificate if given.

    Give either ``pkcs12_file`` or ``cert_file`` (``key_file`` may be
    left out when the key is in the certificate file), or neither for
    server verification only.
    """
    if pkcs12_file is not None and cert_file is not None:
        raise ConfigurationError(
            "give either a PKCS#12 bundle or PEM files, not both"
        )
    context = server_context(ca_file)

    certificate: ClientCertificate | None = None
    if pkcs12_file is not None:
        certificate = _load_pkcs12(
            context, pkcs12_file, pkcs12_password_file
        )
    elif cert_file is not None:
        certificate = _load_pem(
            context, cert_file, key_file, key_password_file
        )
    elif key_file is not None:
        raise ConfigurationError("a private key without a certificate")

    if certificate is not None:
        logger.info(
            "insi_client_certificate_loaded serial=%s not_after=%s",
            certificate.serial,
            certificate.not_after.isoformat(),
        )
    return ClientTls(context, certificate)


def from_settings(settings: Settings, now: datetime) -> ClientTls | None:
    """The TLS setup ``settings`` describe; ``None`` for plain HTTP.

    In production https, a CA bundle and a client certificate are
    mandatory, and the certificate must pass `check_for_production`.
    """
    has_certificate = (
        settings.tls_cert_file is not None
        or settings.tls_pkcs12_file is not None
    )
    production = settings.environment == "production"
    if production and not has_certificate:
        raise ConfigurationError(
            "production needs an INSi client certificate (PKCS#12 or PEM)"
        )
    if not settings.insi_url.startswith("https:"):
        if production:
            raise ConfigurationError("production needs an https INSi URL")
        return None
    if production and settings.tls_ca_file is None:
        # The IGC-Santé roots are not in system trust stores.
        raise ConfigurationError(
            "production needs INS_WORKER_TLS_CA_FILE (the IGC-Santé chain)"
        )

    tls = client_context(
        ca_file=settings.tls_ca_file,
        cert_file=settings.tls_cert_file,
        key_file=settings.tls_key_file,
        key_password_file=settings.tls_key_password_file,
        pkcs12_file=settings.tls_pkcs12_file,
        pkcs12_password_file=settings.tls_pkcs12_password_file,
    )
    if production and tls.certificate is not None:
        check_for_production(tls.certificate, now)
    return tls
