"""Client TLS material: loading PEM and PKCS#12, and production checks."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from worker.errors import (
    ConfigurationError,
    InsiCertificateError,
    InsiPermanent,
    InsiTransient,
)
from worker.insi import tls
from worker.settings import Settings

from .support import NOW, Pki, pem_cert, pem_key


def test_pem_credentials_give_a_verifying_tls12_context(pki: Pki) -> None:
    """The context verifies the server, checks its name, TLS >= 1.2."""
    loaded = tls.client_context(
        ca_file=pki.files["ca.pem"],
        cert_file=pki.files["client.pem"],
        key_file=pki.files["client.key"],
    )

    context = loaded.context
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert loaded.certificate is not None
    assert loaded.certificate.subject_cn == "INSI-AUTO"
    assert loaded.certificate.subject_ou == "TESTOU"


def test_pkcs12_bundle_loads_with_its_password_file(pki: Pki) -> None:
    """The trailing newline of a mounted password file is not the password."""
    loaded = tls.client_context(
        ca_file=pki.files["ca.pem"],
        pkcs12_file=pki.files["client.p12"],
        pkcs12_password_file=pki.files["client.p12.pass"],
    )

    info = loaded.certificate
    assert info is not None
    assert (info.subject_cn, info.subject_ou) == ("INSI-AUTO", "TESTOU")
    assert info.issuer_cn == "TEST CA"
    assert info.not_before < NOW < info.not_after
    assert info.seconds_left(NOW) > 0
    assert len(info.sha256) == 64


def test_certificate_info_reads_the_validity_dates(pki: Pki) -> None:
    """not_after is the certificate's, as an aware UTC datetime."""
    end = (NOW + dt.timedelta(days=3)).replace(microsecond=0)
    _, cert = pki.issue("INSI-AUTO", ou="OU2", not_after=end)

    info = tls.ClientCertificate.from_x509(cert)

    assert info.not_after == end
    assert info.not_after.tzinfo is not None
    assert info.serial == f"{cert.serial_number:x}"


def test_pkcs12_with_a_wrong_password_is_a_configuration_error(
    pki: Pki, tmp_path: Path
) -> None:
    """Wrong password: a clear error that does not echo the password."""
    wrong = tmp_path / "wrong.pass"
    wrong.write_bytes(b"hunter2-not-it")

    with pytest.raises(ConfigurationError) as caught:
        tls.client_context(
            ca_file=pki.files["ca.pem"],
            pkcs12_file=pki.files["client.p12"],
            pkcs12_password_file=wrong,
        )

    assert "hunter2" not in str(caught.value)
    assert "password" in str(caught.value)


def test_encrypted_pem_key_uses_its_password_file(
    pki: Pki, tmp_path: Path
) -> None:
    """A PEM key under a password loads with the password file."""
    key, cert = pki.issue("INSI-MANU", ou="OU3")
    key_file = tmp_path / "enc.key"
    key_file.write_bytes(pem_key(key, b"pem-pass"))
    cert_file = tmp_path / "enc.pem"
    cert_file.write_bytes(pem_cert(cert))
    password = tmp_path / "enc.pass"
    password.write_bytes(b"pem-pass\r\n")

    loaded = tls.client_context(
        ca_file=pki.files["ca.pem"],
        cert_file=cert_file,
        key_file=key_file,
        key_password_file=password,
    )

    assert loaded.certificate is not None
    assert loaded.certificate.subject_cn == "INSI-MANU"
    with pytest.raises(ConfigurationError):
        tls.client_context(
            ca_file=pki.files["ca.pem"], cert_file=cert_file, key_file=key_file
        )


def test_key_of_another_certificate_is_refused(pki: Pki) -> None:
    """Certificate and key must belong together."""
    with pytest.raises(ConfigurationError, match="client certificate"):
        tls.client_context(
            ca_file=pki.files["ca.pem"],
            cert_file=pki.files["client.pem"],
            key_file=pki.files["server.key"],
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ca_file": Path("/nonexistent/ca.pem")},
        {"ca_file": None, "cert_file": Path("/nonexistent/c.pem")},
        {"ca_file": None, "pkcs12_file": Path("/nonexistent/c.p12")},
        {"ca_file": None, "key_file": Path("/nonexistent/c.key")},
    ],
)
def test_missing_files_are_configuration_errors(
    kwargs: dict[str, Any],
) -> None:
    """Each missing or orphan file is named in a configuration error."""
    with pytest.raises(ConfigurationError):
        tls.client_context(**kwargs)


def test_pkcs12_and_pem_together_are_refused(pki: Pki) -> None:
    """Two sources of identity would be ambiguous."""
    with pytest.raises(ConfigurationError, match="not both"):
        tls.client_context(
            ca_file=pki.files["ca.pem"],
            cert_file=pki.files["client.pem"],
            pkcs12_file=pki.files["client.p12"],
        )


def test_pkcs12_key_never_lands_in_the_temp_folder(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With memfd, loading writes nothing to the temporary folder."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)

    tls.client_context(
        ca_file=pki.files["ca.pem"],
        pkcs12_file=pki.files["client.p12"],
        pkcs12_password_file=pki.files["client.p12.pass"],
    )

    assert list(tmp_path.iterdir()) == []


class _Recording(ssl.SSLContext):
    """Records what the key file looked like when it was loaded."""

    seen: list[tuple[str, int, bytes]]

    def load_cert_chain(self, certfile: Any, *args: Any, **kw: Any) -> None:
        path = str(certfile)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        self.seen.append((path, mode, Path(path).read_bytes()))
        super().load_cert_chain(certfile, *args, **kw)


@pytest.mark.parametrize("memfd", [True, False])
def test_pkcs12_key_is_loaded_encrypted_and_gone_after(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, memfd: bool
) -> None:
    """The transient key is encrypted, 0600 if on disk, and removed."""
    if not memfd:
        monkeypatch.delattr(os, "memfd_create", raising=False)
    elif not hasattr(os, "memfd_create"):
        pytest.skip("no memfd on this system")
    context = _Recording(ssl.PROTOCOL_TLS_CLIENT)
    context.seen = []

    tls._load_pkcs12(
        context, pki.files["client.p12"], pki.files["client.p12.pass"]
    )

    [(path, mode, data)] = context.seen
    assert b"ENCRYPTED PRIVATE KEY" in data
    assert b"BEGIN PRIVATE KEY" not in data
    assert not Path(path).exists()
    if memfd:
        assert path.startswith("/proc/self/fd/")
    else:
        assert mode == 0o600


def test_unencrypted_pkcs12_needs_no_password_file(
    pki: Pki, tmp_path: Path
) -> None:
    """A bundle without a password loads without a password file."""
    key, cert = pki.issue("INSI-AUTO", ou="OU4")
    bundle = tmp_path / "open.p12"
    bundle.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"c", key, cert, None, serialization.NoEncryption()
        )
    )

    loaded = tls.client_context(ca_file=None, pkcs12_file=bundle)

    assert loaded.certificate is not None
    assert loaded.certificate.subject_ou == "OU4"


def _info(
    pki: Pki,
    cn: str,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tls.ClientCertificate:
    _, cert = pki.issue(
        cn, ou="OU", not_before=not_before, not_after=not_after
    )
    return tls.ClientCertificate.from_x509(cert)


@pytest.mark.parametrize("cn", ["INSI-AUTO", "INSI-MANU"])
def test_production_accepts_the_insi_cns(pki: Pki, cn: str) -> None:
    """INSI-AUTO and INSI-MANU, within their validity: accepted."""
    tls.check_for_production(_info(pki, cn), NOW)


@pytest.mark.parametrize("cn", ["DUPONT JEAN", "insi-auto", "INSI-AUTO2"])
def test_production_refuses_other_cns_without_naming_them(
    pki: Pki, cn: str
) -> None:
    """Any other CN is refused; the message does not repeat it."""
    with pytest.raises(ConfigurationError, match="INSI-AUTO") as caught:
        tls.check_for_production(_info(pki, cn), NOW)

    assert cn not in str(caught.value)


def test_production_refuses_an_expired_certificate(pki: Pki) -> None:
    """After not_after: refused with the date."""
    info = _info(
        pki,
        "INSI-AUTO",
        not_before=NOW - dt.timedelta(days=10),
        not_after=NOW - dt.timedelta(days=1),
    )

    with pytest.raises(ConfigurationError, match="expired"):
        tls.check_for_production(info, NOW)


def test_production_refuses_a_certificate_not_yet_valid(pki: Pki) -> None:
    """Before not_before: refused."""
    info = _info(
        pki,
        "INSI-AUTO",
        not_before=NOW + dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=10),
    )

    with pytest.raises(ConfigurationError, match="not valid before"):
        tls.check_for_production(info, NOW)


def test_certificate_error_is_permanent_and_configuration() -> None:
    """Never retried, and seen as a configuration problem."""
    error = InsiCertificateError("x")

    assert isinstance(error, InsiPermanent)
    assert isinstance(error, ConfigurationError)
    assert not isinstance(error, InsiTransient)
    assert error.kind == "certificate"


def _settings(pki: Pki, **values: Any) -> Settings:
    base = Settings(
        insi_url="https://127.0.0.1:9/lps",
        tls_ca_file=pki.files["ca.pem"],
        tls_pkcs12_file=pki.files["client.p12"],
        tls_pkcs12_password_file=pki.files["client.p12.pass"],
    )
    return replace(base, **values)


def test_settings_over_http_need_no_tls(pki: Pki) -> None:
    """The local simulator over http: no context at all."""
    assert tls.from_settings(Settings(), NOW) is None


def test_settings_give_the_client_certificate(pki: Pki) -> None:
    """PKCS#12 settings give the context and the certificate's OU."""
    loaded = tls.from_settings(_settings(pki), NOW)

    assert loaded is not None and loaded.certificate is not None
    assert loaded.certificate.subject_ou == "TESTOU"


def test_production_settings_are_checked(pki: Pki, tmp_path: Path) -> None:
    """Production needs https, a certificate, and an INSi CN."""
    production = _settings(pki, environment="production")
    assert tls.from_settings(production, NOW) is not None

    with pytest.raises(ConfigurationError, match="https"):
        tls.from_settings(
            replace(production, insi_url="http://127.0.0.1:9/lps"), NOW
        )
    with pytest.raises(ConfigurationError, match="certificate"):
        tls.from_settings(
            replace(production, tls_pkcs12_file=None), NOW
        )
    with pytest.raises(ConfigurationError, match="CA_FILE"):
        tls.from_settings(replace(production, tls_ca_file=None), NOW)

    key, cert = pki.issue("SOMEONE", ou="OU")
    (tmp_path / "c.pem").write_bytes(pem_cert(cert))
    (tmp_path / "c.key").write_bytes(pem_key(key, None))
    with pytest.raises(ConfigurationError, match="CN"):
        tls.from_settings(
            replace(
                production,
                tls_pkcs12_file=None,
                tls_cert_file=tmp_path / "c.pem",
                tls_key_file=tmp_path / "c.key",
            ),
            NOW,
        )
