"""HTTP toward INSi: headers, keep-alive, limits, and typed failures."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from worker.errors import InsiProtocolError, InsiTimeout, InsiUnreachable
from worker.insi.transport import InsiTransport

from .support import Stub, StubFactory, free_port

ACTION = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
ENVELOPE = b'<?xml version="1.0"?><e:Envelope xmlns:e="urn:x"/>'


def _transport(**overrides: float) -> InsiTransport:
    values: dict[str, float] = {
        "timeout_s": 5.0,
        "connect_timeout_s": 2.0,
        "max_connections": 4,
    }
    values.update(overrides)
    return InsiTransport(
        ssl_context=None,
        timeout_s=values["timeout_s"],
        connect_timeout_s=values["connect_timeout_s"],
        max_connections=int(values["max_connections"]),
        max_reply_bytes=int(values.get("max_reply_bytes", 1_048_576)),
    )


async def _echo(request: web.Request, stub: Stub) -> web.StreamResponse:
    return web.Response(
        body=b"<ok/>", status=200, content_type="application/soap+xml"
    )


async def test_post_sends_a_soap12_request(stub_factory: StubFactory) -> None:
    """Body as given; SOAP 1.2 Content-Type with the action; no SOAPAction."""
    stub = await stub_factory({"/lps": _echo})
    transport = _transport()

    status, body = await transport.post(f"{stub.url}/lps", ENVELOPE, ACTION)
    await transport.close()

    assert (status, body) == (200, b"<ok/>")
    assert stub.bodies == [ENVELOPE]
    headers = stub.headers[0]
    assert headers["Content-Type"] == (
        f'application/soap+xml; charset=utf-8; action="{ACTION}"'
    )
    assert "SOAPAction" not in headers


async def test_connections_are_kept_alive(stub_factory: StubFactory) -> None:
    """Consecutive calls reuse one connection."""
    stub = await stub_factory({"/lps": _echo})
    transport = _transport()

    for _ in range(3):
        await transport.post(f"{stub.url}/lps", ENVELOPE, ACTION)
    await transport.close()

    assert len(set(stub.peers)) == 1


async def test_connections_are_bounded(stub_factory: StubFactory) -> None:
    """No more calls in flight than max_connections."""
    in_flight = 0
    highest = 0

    async def slowish(request: web.Request, stub: Stub) -> web.StreamResponse:
        nonlocal in_flight, highest
        in_flight += 1
        highest = max(highest, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return await _echo(request, stub)

    stub = await stub_factory({"/lps": slowish})
    transport = _transport(max_connections=2)

    await asyncio.gather(*(
        transport.post(f"{stub.url}/lps", ENVELOPE, ACTION) for _ in range(6)
    ))
    await transport.close()

    assert highest == 2


async def test_error_statuses_are_returned_not_raised(
    stub_factory: StubFactory,
) -> None:
    """A 500 or 503 is the reply parser's to judge."""
    async def unavailable(
        request: web.Request, stub: Stub
    ) -> web.StreamResponse:
        return web.Response(status=503)

    stub = await stub_factory({"/lps": unavailable})
    transport = _transport()

    status, body = await transport.post(f"{stub.url}/lps", ENVELOPE, ACTION)
    await transport.close()

    assert (status, body) == (503, b"")


async def test_redirects_are_not_followed(stub_factory: StubFactory) -> None:
    """A redirect would send patient traits elsewhere: never followed."""
    async def moved(request: web.Request, stub: Stub) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    stub = await stub_factory({"/lps": moved, "/elsewhere": _echo})
    transport = _transport()

    status, _ = await transport.post(f"{stub.url}/lps", ENVELOPE, ACTION)
    await transport.close()

    assert status == 302
    assert len(stub.bodies) == 1


async def test_silent_server_is_a_timeout(stub_factory: StubFactory) -> None:
    """No reply within the total timeout: InsiTimeout, promptly."""
    async def silent(request: web.Request, stub: Stub) -> web.StreamResponse:
        await stub.release.wait()
        return await _echo(request, stub)

    stub = await stub_factory({"/lps": silent})
    transport = _transport(timeout_s=0.2)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(InsiTimeout):
        await transport.post(f"{stub.url}/lps", ENVELOPE, ACTION)
    await transport.close()

    assert loop.time() - started < 2.0


async def test_refused_connection_is_unreachable() -> None:
    """Nothing listening: InsiUnreachable."""
    transport = _transport()

    with pytest.raises(InsiUnreachable):
        await transport.post(
            f"http://127.0.0.1:{free_port()}/lps", ENVELOPE, ACTION
        )
    await transport.close()


async def test_dropped_connection_is_unreachable(
    stub_factory: StubFactory,
) -> None:
    """The server closing mid-request: InsiUnreachable."""
    async def drop(request: web.Request, stub: Stub) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.1)
        return await _echo(request, stub)

    stub = await stub_factory({"/lps": drop})
    transport = _transport()

    with pytest.raises(InsiUnreachable):
        await transport.post(f"{stub.url}/lps", ENVELOPE, ACTION)
    await transport.close()


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversize_reply_is_a_protocol_error(
    stub_factory: StubFactory, chunked: bool
) -> None:
    """A reply over the limit is refused, announced or not."""
    async def big(request: web.Request, stub: Stub) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=b"x" * 5000)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(5):
            await response.write(b"x" * 1000)
        await response.write_eof()
        return response

    stub = await stub_factory({"/lps": big})
    transport = _transport(max_reply_bytes=4096)

    with pytest.raises(InsiProtocolError, match="larger than 4096"):
        await transport.post(f"{stub.url}/lps", ENVELOPE, ACTION)
    await transport.close()


async def test_session_reopens_after_close(stub_factory: StubFactory) -> None:
    """close() is not final: a later call opens a new session."""
    stub = await stub_factory({"/lps": _echo})
    transport = _transport()

    await transport.post(f"{stub.url}/lps", ENVELOPE, ACTION)
    await transport.close()
    status, _ = await transport.post(f"{stub.url}/lps", ENVELOPE, ACTION)
    await transport.close()

    assert status == 200
