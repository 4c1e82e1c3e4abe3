"""One INSi call end to end, against local stand-ins, over http and mTLS."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest
from aiohttp import web
from lxml import etree

from worker.errors import (
    InsiCertificateError,
    InsiConfigurationFault,
    InsiError,
    InsiHttpError,
    InsiTimeout,
    InsiTransientFault,
    InsiUnreachable,
)
from worker.insi.client import InsiClient
from worker.insi.contract import Envelopes
from worker.insi.model import Exchange, Operation, TraitsSearch
from worker.insi.tls import client_context
from worker.insi.transport import InsiTransport

from .support import (
    Handler,
    Pki,
    Stub,
    StubFactory,
    free_port,
    make_pki,
    pem_cert,
    pem_key,
    server_ssl,
)

SEARCH = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")
WSA = "http://www.w3.org/2005/08/addressing"


def _replying(path: Path, status: int = 200) -> Handler:
    content = path.read_bytes()

    async def reply(request: web.Request, stub: Stub) -> web.StreamResponse:
        return web.Response(
            body=content,
            status=status,
            content_type="application/soap+xml",
        )

    return reply


def _client(
    envelopes: Envelopes,
    url: str,
    context: ssl.SSLContext | None = None,
    timeout_s: float = 5.0,
) -> InsiClient:
    transport = InsiTransport(
        ssl_context=context,
        timeout_s=timeout_s,
        connect_timeout_s=2.0,
        max_connections=2,
    )
    return InsiClient(envelopes, transport, url)


async def _failing(client: InsiClient) -> InsiError:
    try:
        await client.search(SEARCH)
    except InsiError as exc:
        return exc
    finally:
        await client.close()
    raise AssertionError("the call did not fail")


def _message_id(request_xml: bytes) -> str | None:
    return etree.fromstring(request_xml).findtext(f".//{{{WSA}}}MessageID")


async def test_found_reply_fills_the_exchange(
    envelopes: Envelopes, insi_kit: Path, stub_factory: StubFactory
) -> None:
    """200 with a RESULTAT: the exchange holds everything for the audit."""
    reply = insi_kit / "responses" / "live-adrtrois-toussaint.xml"
    stub = await stub_factory({"/lps": _replying(reply)})
    client = _client(envelopes, f"{stub.url}/lps")

    exchange = await client.search(SEARCH)
    await client.close()

    assert exchange.operation is Operation.TRAITS_SEARCH
    assert exchange.search == SEARCH
    assert exchange.http_status == 200
    assert exchange.request_xml == stub.bodies[0]
    assert exchange.response_xml == reply.read_bytes()
    assert _message_id(exchange.request_xml) == exchange.message_id
    assert exchange.started_at.tzinfo is UTC
    assert exchange.duration_s > 0
    assert exchange.error_kind is None and exchange.fault_code is None
    assert exchange.result is not None
    assert exchange.result.cr_code == "00"
    assert exchange.result.active is not None
    assert exchange.result.active.ins == "160012B02077713"


async def test_fault_raises_with_the_exchange(
    envelopes: Envelopes, insi_kit: Path, stub_factory: StubFactory
) -> None:
    """500 with siram_40/insi_102: transient fault, exchange attached."""
    fault = insi_kit / "faults" / "fault-siram40-insi102.xml"
    stub = await stub_factory({"/lps": _replying(fault, 500)})

    error = await _failing(_client(envelopes, f"{stub.url}/lps"))

    assert isinstance(error, InsiTransientFault)
    exchange = error.exchange
    assert isinstance(exchange, Exchange)
    assert exchange.http_status == 500
    assert exchange.response_xml == fault.read_bytes()
    assert exchange.result is None
    assert exchange.error_kind == "fault_transient"
    assert exchange.fault_code == "siram_40/insi_102"
    assert exchange.extra["fault_severity"] == "fatal"


async def test_configuration_fault_raises_with_the_exchange(
    envelopes: Envelopes, insi_kit: Path, stub_factory: StubFactory
) -> None:
    """siram_100/desir_550: a configuration fault, not retryable."""
    fault = insi_kit / "faults" / "fault-siram100-desir550.xml"
    stub = await stub_factory({"/lps": _replying(fault, 500)})

    error = await _failing(_client(envelopes, f"{stub.url}/lps"))

    assert isinstance(error, InsiConfigurationFault)
    assert error.exchange is not None
    assert error.exchange.fault_code == "siram_100/desir_550"


async def test_unavailable_without_body_is_an_http_error(
    envelopes: Envelopes, stub_factory: StubFactory
) -> None:
    """503 and no SOAP body: InsiHttpError carrying the status."""
    async def unavailable(
        request: web.Request, stub: Stub
    ) -> web.StreamResponse:
        return web.Response(status=503)

    stub = await stub_factory({"/lps": unavailable})

    error = await _failing(_client(envelopes, f"{stub.url}/lps"))

    assert isinstance(error, InsiHttpError)
    assert error.status == 503
    assert error.exchange is not None
    assert error.exchange.http_status == 503
    assert error.exchange.error_kind == "http_error"


async def test_silent_server_times_out_with_the_exchange(
    envelopes: Envelopes, stub_factory: StubFactory
) -> None:
    """No answer: InsiTimeout; the request sent is still recorded."""
    async def silent(request: web.Request, stub: Stub) -> web.StreamResponse:
        await stub.release.wait()
        return web.Response(status=204)

    stub = await stub_factory({"/lps": silent})

    error = await _failing(
        _client(envelopes, f"{stub.url}/lps", timeout_s=0.2)
    )

    assert isinstance(error, InsiTimeout)
    assert error.exchange is not None
    assert error.exchange.http_status is None
    assert error.exchange.response_xml is None
    assert error.exchange.request_xml == stub.bodies[0]
    assert error.exchange.error_kind == "timeout"


async def test_refused_connection_is_unreachable_with_the_exchange(
    envelopes: Envelopes,
) -> None:
    """Nothing listening: InsiUnreachable with the exchange."""
    url = f"http://127.0.0.1:{free_port()}/lps"

    error = await _failing(_client(envelopes, url))

    assert isinstance(error, InsiUnreachable)
    assert error.exchange is not None
    assert error.exchange.error_kind == "unreachable"


async def test_logs_carry_no_personal_data(
    envelopes: Envelopes,
    insi_kit: Path,
    stub_factory: StubFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One line per call with ids and codes; no traits, no INS."""
    reply = insi_kit / "responses" / "live-adrtrois-toussaint.xml"
    stub = await stub_factory({"/lps": _replying(reply)})
    client = _client(envelopes, f"{stub.url}/lps")

    with caplog.at_level(logging.DEBUG, logger="worker.insi"):
        exchange = await client.search(SEARCH)
    await client.close()

    text = caplog.text
    assert exchange.message_id in text
    for personal in ("ADRTROIS", "TOUSSAINT", "1960-01-01", "160012B020777"):
        assert personal not in text


@pytest.mark.parametrize("form", ["pkcs12", "pem"])
async def test_mutual_tls_call_succeeds(
    envelopes: Envelopes,
    insi_kit: Path,
    pki: Pki,
    stub_factory: StubFactory,
    form: str,
) -> None:
    """A server requiring client certificates accepts ours."""
    reply = insi_kit / "responses" / "cnda-REP_CR01.xml"
    stub = await stub_factory({"/lps": _replying(reply)}, server_ssl(pki))
    if form == "pkcs12":
        loaded = client_context(
            ca_file=pki.files["ca.pem"],
            pkcs12_file=pki.files["client.p12"],
            pkcs12_password_file=pki.files["client.p12.pass"],
        )
    else:
        loaded = client_context(
            ca_file=pki.files["ca.pem"],
            cert_file=pki.files["client.pem"],
            key_file=pki.files["client.key"],
        )
    client = _client(envelopes, f"{stub.url}/lps", loaded.context)

    exchange = await client.search(SEARCH)
    await client.close()

    assert stub.url.startswith("https://")
    assert exchange.result is not None
    assert exchange.result.cr_code == "01"


@pytest.mark.parametrize("tls12_only", [False, True])
async def test_client_certificate_refused_is_a_certificate_error(
    envelopes: Envelopes,
    pki: Pki,
    refusing_tls_server: Callable[[bool], str],
    tls12_only: bool,
) -> None:
    """The server refusing our certificate is permanent, never retried."""
    url = refusing_tls_server(tls12_only)
    loaded = client_context(ca_file=pki.files["ca.pem"])

    error = await _failing(_client(envelopes, url, loaded.context))

    assert isinstance(error, InsiCertificateError)
    assert error.exchange is not None
    assert error.exchange.error_kind == "certificate"


async def test_server_from_another_ca_is_a_certificate_error(
    envelopes: Envelopes,
    pki: Pki,
    stub_factory: StubFactory,
    tmp_path: Path,
) -> None:
    """A server our CA bundle does not vouch for: refused, permanent."""
    context = server_ssl(pki, require_client=False)
    stub = await stub_factory({"/lps": _replying(Path(__file__))}, context)
    other = make_pki(tmp_path / "other", "OTHER CA")
    loaded = client_context(ca_file=other.files["ca.pem"])

    error = await _failing(
        _client(envelopes, f"{stub.url}/lps", loaded.context)
    )

    assert isinstance(error, InsiCertificateError)
    assert stub.bodies == []


async def test_server_name_mismatch_is_a_certificate_error(
    envelopes: Envelopes,
    pki: Pki,
    stub_factory: StubFactory,
    tmp_path: Path,
) -> None:
    """A certificate for another host name: refused before sending."""
    key, cert = pki.issue("insi.example", server=True, san_dns="insi.example")
    (tmp_path / "other.pem").write_bytes(pem_cert(cert))
    (tmp_path / "other.key").write_bytes(pem_key(key, None))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "other.pem", tmp_path / "other.key")
    stub = await stub_factory({"/lps": _replying(Path(__file__))}, context)
    loaded = client_context(ca_file=pki.files["ca.pem"])

    error = await _failing(
        _client(envelopes, f"{stub.url}/lps", loaded.context)
    )

    assert isinstance(error, InsiCertificateError)
    assert stub.bodies == []
