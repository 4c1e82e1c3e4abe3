"""Fixtures of the INSi client tests: a test PKI and local INSi stubs."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from worker.insi.contract import Envelopes

from .support import (
    CALLER,
    Handler,
    Pki,
    Stub,
    StubFactory,
    make_pki,
    pem_cert,
    pem_key,
    refuse_forever,
    server_ssl,
    start_stub,
)


@pytest.fixture(scope="session")
def envelopes() -> Envelopes:
    """Envelopes for a test caller, from the project's contract."""
    return Envelopes(CALLER)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA with a server certificate and client credentials.

    Files: ca.pem; server.pem/server.key for 127.0.0.1; client.pem and
    client.key (CN INSI-AUTO, OU TESTOU); client.p12 with its password
    file client.p12.pass (ending with a newline, as mounted secrets do).
    """
    pki = make_pki(tmp_path_factory.mktemp("pki"))

    key, cert = pki.issue("127.0.0.1", server=True, san_ip="127.0.0.1")
    pki.write("server.pem", pem_cert(cert) + pem_cert(pki.ca_cert))
    pki.write("server.key", pem_key(key, None))

    key, cert = pki.issue("INSI-AUTO", ou="TESTOU")
    pki.write("client.pem", pem_cert(cert))
    pki.write("client.key", pem_key(key, None))
    pki.write(
        "client.p12",
        pkcs12.serialize_key_and_certificates(
            b"client",
            key,
            cert,
            [pki.ca_cert],
            serialization.BestAvailableEncryption(b"s3cret"),
        ),
    )
    pki.write("client.p12.pass", b"s3cret\n")
    return pki


@pytest.fixture
async def stub_factory() -> AsyncIterator[StubFactory]:
    """Start local stubs for a test; stops them (and slow handlers) after."""
    runners: list[tuple[Stub, web.AppRunner]] = []

    async def factory(
        routes: dict[str, Handler], ssl_context: ssl.SSLContext | None = None
    ) -> Stub:
        stub, runner = await start_stub(routes, ssl_context)
        runners.append((stub, runner))
        return stub

    yield factory

    for stub, runner in runners:
        stub.release.set()
        await runner.cleanup()


@pytest.fixture
def refusing_tls_server(pki: Pki) -> Iterator[Callable[[bool], str]]:
    """Start TLS servers that refuse clients without a certificate.

    Unlike asyncio's, this server lets its TLS alert reach the client,
    as OpenSSL-based front ends do. ``start(tls12_only)`` gives its URL.
    """
    listeners: list[socket.socket] = []

    def start(tls12_only: bool) -> str:
        context = server_ssl(pki)
        if tls12_only:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        threading.Thread(
            target=refuse_forever, args=(listener, context), daemon=True
        ).start()
        return f"https://127.0.0.1:{listener.getsockname()[1]}/lps"

    yield start

    for listener in listeners:
        # shutdown wakes the thread blocked in accept(); close alone not.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
