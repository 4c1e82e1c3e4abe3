"""Helpers of the INSi client tests: a test PKI and local INSi stand-ins."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from worker.insi.contract import Caller

#: the kit, found the way the project's conftest finds it
KIT = Path(__file__).resolve().parents[2] / ".." / "shared" / "insi-kit"

CALLER = Caller(
    idam="00000000",
    software_name="urn:lps:ins-worker:test",
    software_version="0.1",
    instance="b3c1a3f2-8d0e-4c55-9e61-0f3b2a7d9c10",
    emetteur="EMETTEUR-TEST",
)

NOW = dt.datetime.now(dt.UTC)


def kit_files(*folders: str) -> list[str]:
    """Names of the kit's files in ``folders`` ("responses/x.xml"...).

    Read at collection so that a file added to the kit becomes a test;
    empty when the kit is absent (the ``insi_kit`` fixture then skips).
    """
    names: list[str] = []
    for folder in folders:
        path = KIT / folder
        if path.is_dir():
            names += sorted(f"{folder}/{f.name}" for f in path.glob("*.xml"))
    return names or ["kit-absent"]


def expected(kit: Path) -> dict[str, Any]:
    """The kit's expected values, by file name."""
    data: dict[str, Any] = json.loads((kit / "expected.json").read_text())
    return data


def _name(cn: str, ou: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou is not None:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST"))
    return x509.Name(parts)


@dataclass
class Pki:
    """A self-made CA and what it issued, as files in a folder."""

    folder: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    files: dict[str, Path] = field(default_factory=dict)

    def write(self, name: str, data: bytes) -> Path:
        """Write a file of the PKI, readable by its owner only."""
        path = self.folder / name
        path.write_bytes(data)
        path.chmod(0o600)
        self.files[name] = path
        return path

    def issue(
        self,
        cn: str,
        *,
        ou: str | None = None,
        server: bool = False,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        san_ip: str | None = None,
        san_dns: str | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A key and a certificate signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        usage = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if server
            else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, ou))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - dt.timedelta(days=1))
            .not_valid_after(not_after or NOW + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        names: list[x509.GeneralName] = []
        if san_ip:
            names.append(x509.IPAddress(ipaddress.ip_address(san_ip)))
        if san_dns:
            names.append(x509.DNSName(san_dns))
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(names), critical=False
            )
        return key, builder.sign(self.ca_key, hashes.SHA256())


def make_pki(folder: Path, name: str = "TEST CA") -> Pki:
    """A fresh CA in ``folder``, its certificate written as ca.pem."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=2))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    pki = Pki(folder, key, cert)
    pki.write("ca.pem", pem_cert(cert))
    return pki


def pem_key(key: ec.EllipticCurvePrivateKey, password: bytes | None) -> bytes:
    """A private key as PKCS#8 PEM, encrypted when given a password."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption,
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    """A certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def server_ssl(pki: Pki, *, require_client: bool = True) -> ssl.SSLContext:
    """A stand-in's TLS context: our server certificate, client certs."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.files["server.pem"], pki.files["server.key"])
    context.load_verify_locations(pki.files["ca.pem"])
    context.verify_mode = (
        ssl.CERT_REQUIRED if require_client else ssl.CERT_NONE
    )
    return context


@dataclass
class Stub:
    """A local INSi stand-in and what it saw."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[web.Request, Stub], Awaitable[web.StreamResponse]]
StubFactory = Callable[..., Awaitable[Stub]]


async def start_stub(
    routes: dict[str, Handler], ssl_context: ssl.SSLContext | None = None
) -> tuple[Stub, web.AppRunner]:
    """Serve ``routes`` ({path: handler(request, stub)}) on 127.0.0.1."""
    app = web.Application()
    stub = Stub(url="")

    def wrap(
        handler: Handler,
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            stub.bodies.append(await request.read())
            stub.headers.append(dict(request.headers))
            assert request.transport is not None
            peer = request.transport.get_extra_info("peername")
            stub.peers.append(tuple(peer))
            return await handler(request, stub)

        return handle

    for path, handler in routes.items():
        app.router.add_post(path, wrap(handler))

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context else "http"
    stub.url = f"{scheme}://127.0.0.1:{port}"
    return stub, runner


def refuse_forever(listener: socket.socket, context: ssl.SSLContext) -> None:
    """Accept TLS connections and let the handshake's refusal through."""
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        raw.settimeout(2)
        with contextlib.suppress(ssl.SSLError, OSError):
            context.wrap_socket(raw, server_side=True).recv(1)
        # Drain before closing: closing with unread data would send a
        # reset that destroys the alert on its way to the client.
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(65536):
                pass
        raw.close()


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
