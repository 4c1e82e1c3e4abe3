"""Fault injection: each knob, the injector's arithmetic, the outage."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from worker.errors import (
    InsiHttpError,
    InsiProtocolError,
    InsiTransientFault,
)
from worker.insi import xmlsafe
from worker.insi.model import TraitsSearch
from worker.insi.reply import parse_reply
from worker.simulator import FaultConfig, FaultInjector, FaultMode

ADRTROIS = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")


def test_config_round_trips_through_json() -> None:
    """to_json then from_json gives the same configuration."""
    config = FaultConfig(
        latency_ms=120,
        jitter_ms=30,
        seed=4,
        rates={FaultMode.HTTP_503: 0.25, FaultMode.BACKEND_ERROR: 0.5},
        next=(FaultMode.HANG, FaultMode.RESET),
        huge_text_bytes=2048,
        nesting_depth=300,
    )

    assert FaultConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "document",
    [
        {"latency": 3},
        {"rates": {"nonsense": 0.1}},
        {"rates": {"insi_102": 0.7, "http_503": 0.4}},
        {"rates": {"insi_102": -0.1}},
        {"latency_ms": -1},
        {"latency_ms": "fast"},
        {"next": ["insi_102", "boom"]},
        {"seed": 1.5},
        {"nesting_depth": 0},
        [],
    ],
)
def test_config_refuses_documents_off_the_form(document) -> None:
    """Unknown fields or modes, rates out of range: ValueError."""
    with pytest.raises(ValueError):
        FaultConfig.from_json(document)


def test_spread_shares_one_rate_among_modes() -> None:
    """The CLI's --fault-rate is split equally among --fault-mode."""
    config = FaultConfig.spread(
        0.5, [FaultMode.HTTP_503, FaultMode.RESET], seed=1
    )

    assert config.rates == {FaultMode.HTTP_503: 0.25, FaultMode.RESET: 0.25}
    assert FaultConfig.spread(0.0, [FaultMode.HTTP_503]).rates == {}


def test_a_seeded_injector_repeats_its_draws() -> None:
    """Same seed, same delays and failures, call after call."""
    config = FaultConfig(
        latency_ms=10,
        jitter_ms=50,
        seed=42,
        rates={FaultMode.HTTP_503: 0.3, FaultMode.HANG: 0.2},
    )

    def run() -> list[tuple[float, FaultMode | None]]:
        injector = FaultInjector(config)
        return [(injector.delay_s(), injector.draw()) for _ in range(200)]

    first, second = run(), run()
    assert first == second
    modes = [mode for _, mode in first]
    assert {FaultMode.HTTP_503, FaultMode.HANG, None} == set(modes)
    assert all(0.010 <= delay <= 0.060 for delay, _ in first)


def test_rates_are_honoured_over_many_draws() -> None:
    """A 0.3 rate gives about 30 % of failures."""
    injector = FaultInjector(
        FaultConfig(seed=7, rates={FaultMode.BACKEND_ERROR: 0.3})
    )

    draws = [injector.draw() for _ in range(5000)]

    share = draws.count(FaultMode.BACKEND_ERROR) / len(draws)
    assert 0.27 < share < 0.33


def test_the_queue_comes_before_the_rates_and_empties() -> None:
    """Queued modes are served first, one per call, then the rates."""
    injector = FaultInjector(
        FaultConfig(rates={FaultMode.HTTP_503: 1.0}, next=(FaultMode.HANG,))
    )
    injector.fail_next(FaultMode.CLOSE, 2)

    draws = [injector.draw() for _ in range(4)]

    assert draws == [
        FaultMode.HANG, FaultMode.CLOSE, FaultMode.CLOSE, FaultMode.HTTP_503,
    ]
    assert injector.config.next == ()


async def test_latency_delays_every_answer(
    start_simulator, build, post
) -> None:
    """latency_ms: no answer sooner than that."""
    simulator = await start_simulator(faults=FaultConfig(latency_ms=150))

    started = time.monotonic()
    reply = await post(simulator.url, build(ADRTROIS))

    assert time.monotonic() - started >= 0.15
    assert parse_reply(reply.body, reply.status).cr_code == "00"


@pytest.mark.parametrize(
    ("mode", "detail_code"),
    [
        (FaultMode.BACKEND_ERROR, "insi_102"),
        (FaultMode.SERVICE_UNAVAILABLE, "desir_1020"),
    ],
)
async def test_injected_siram_40_faults_are_retryable(
    mode, detail_code, simulator, build, post
) -> None:
    """Next call: siram_40 fault, HTTP 500; the one after: a result."""
    simulator.fail_next(mode)

    failed = await post(simulator.url, build(ADRTROIS))
    recovered = await post(simulator.url, build(ADRTROIS))

    assert failed.status == 500
    with pytest.raises(InsiTransientFault) as raised:
        parse_reply(failed.body, failed.status)
    fault = raised.value.fault
    assert (fault.code, fault.subcode, fault.detail_code) == (
        "Receiver", "siram_40", detail_code,
    )
    assert parse_reply(recovered.body, recovered.status).cr_code == "00"
    assert simulator.stats.count(f"injected_{mode.value}") == 1


@pytest.mark.parametrize(
    ("mode", "status", "html"),
    [(FaultMode.HTTP_503, 503, False), (FaultMode.HTTP_502_HTML, 502, True)],
)
async def test_http_errors_without_soap_body(
    mode, status, html, start_simulator, build, post
) -> None:
    """503 with an empty body, 502 with an HTML page: InsiHttpError."""
    simulator = await start_simulator(faults=FaultConfig(rates={mode: 1.0}))

    reply = await post(simulator.url, build(ADRTROIS))

    assert reply.status == status
    assert (b"<html>" in reply.body) is html
    assert (reply.body == b"") is not html
    with pytest.raises(InsiHttpError) as raised:
        parse_reply(reply.body, reply.status)
    assert raised.value.status == status


async def test_hang_never_answers_until_the_client_gives_up(
    simulator, build, post
) -> None:
    """A hung call times out on the client's side; the next is served."""
    simulator.fail_next(FaultMode.HANG)

    with pytest.raises(asyncio.TimeoutError):
        await post(simulator.url, build(ADRTROIS), limit_s=0.3)
    reply = await post(simulator.url, build(ADRTROIS))

    assert reply.status == 200
    assert simulator.stats.count("injected_hang") == 1


async def test_stop_releases_a_hung_call_at_once(
    simulator, build, post
) -> None:
    """stop() does not wait for hung calls to time out."""
    simulator.fail_next(FaultMode.HANG)
    pending = asyncio.ensure_future(
        post(simulator.url, build(ADRTROIS), limit_s=30)
    )
    await asyncio.sleep(0.2)

    started = time.monotonic()
    await simulator.stop()

    assert time.monotonic() - started < 1.5
    with pytest.raises(aiohttp.ClientError):
        await pending


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        (FaultMode.RESET, aiohttp.ClientOSError),
        (FaultMode.CLOSE, aiohttp.ServerDisconnectedError),
    ],
)
async def test_connection_dropped_without_response(
    mode, error, simulator, build, post
) -> None:
    """reset: connection reset by peer; close: disconnected, no reply."""
    simulator.fail_next(mode)

    with pytest.raises(error) as raised:
        await post(simulator.url, build(ADRTROIS))

    if mode is FaultMode.RESET:
        assert "reset" in str(raised.value).lower()


@pytest.mark.parametrize(
    ("mode", "reasons", "marker"),
    [
        (FaultMode.XML_EXTERNAL_ENTITY, {"dtd_forbidden"}, b"SYSTEM"),
        (FaultMode.XML_ENTITY_BOMB, {"dtd_forbidden"}, b"<!ENTITY lol9"),
        (FaultMode.XML_HUGE_TEXT, {"too_large"}, b"A" * 100_000),
        # libxml2 itself stops at its depth limit, before the shape check
        (
            FaultMode.XML_DEEP_NESTING,
            {"too_deep", "not_xml"},
            b"<x>" * 5000,
        ),
    ],
)
async def test_hostile_replies_are_refused_by_the_hardened_parser(
    mode, reasons, marker, simulator, build, post
) -> None:
    """Each hostile mode carries its attack and the worker refuses it."""
    simulator.fail_next(mode)

    reply = await post(simulator.url, build(ADRTROIS), limit_s=20)

    assert reply.status == 200 and marker in reply.body
    with pytest.raises(xmlsafe.XmlRefused) as raised:
        parse_reply(reply.body, reply.status)
    assert raised.value.reason in reasons
    assert isinstance(raised.value, InsiProtocolError)
    assert simulator.stats.canary_fetches == 0


async def test_external_entity_points_at_a_counting_canary(
    simulator, build, post, session
) -> None:
    """The entity's URL is the simulator's canary, which counts fetches."""
    simulator.fail_next(FaultMode.XML_EXTERNAL_ENTITY)
    reply = await post(simulator.url, build(ADRTROIS))
    canary = simulator.base_url + "/_canary/xxe"

    async with session.get(canary) as response:
        await response.read()

    assert f'SYSTEM "{canary}"'.encode() in reply.body
    assert simulator.stats.canary_fetches == 1


async def test_hostile_sizes_follow_the_configuration(
    start_simulator, build, post
) -> None:
    """huge_text_bytes and nesting_depth set the size of the attack."""
    simulator = await start_simulator(
        faults=FaultConfig(
            huge_text_bytes=3000,
            nesting_depth=40,
            next=(FaultMode.XML_HUGE_TEXT, FaultMode.XML_DEEP_NESTING),
        )
    )

    huge = await post(simulator.url, build(ADRTROIS))
    deep = await post(simulator.url, build(ADRTROIS))

    assert b"A" * 3000 in huge.body and b"A" * 3001 not in huge.body
    assert deep.body.count(b"<x>") == 40


async def test_outage_refuses_connections_until_restored(
    simulator, build, post
) -> None:
    """outage(): connection refused on the same URL; restore(): served."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as fresh:
        await simulator.outage()
        assert simulator.in_outage
        with pytest.raises(aiohttp.ClientConnectorError):
            await post(simulator.url, build(ADRTROIS), client=fresh)

        await simulator.restore()
        reply = await post(simulator.url, build(ADRTROIS), client=fresh)

    assert not simulator.in_outage
    assert reply.status == 200
