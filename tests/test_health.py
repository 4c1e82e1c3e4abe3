"""The probes over HTTP: each readiness condition flipped, liveness kept.

Readiness tests build the real worker (``worker.app.build``) on the
local servers and read ``/readyz`` while one condition at a time is
broken; liveness must stay up through all of them, and fail only on a
stuck handler or a silent event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import aiohttp
import pytest
from worker_harness import CN, delete_topology, request_body, traits

from worker import app, metrics
from worker.breaker import BreakerState
from worker.certwatch import CertificateWatch
from worker.health import HandlerClock, Health
from worker.insi.tls import ClientCertificate
from worker.pipeline import Delivery
from worker.settings import Settings
from worker.simulator.server import Simulator
from worker.store.pool import create_pool, ping

ADRTROIS = traits("Adrtrois", ["Toussaint"], "M", "1960-01-01")

CONFIGURATION_GAUGE = "ins_worker_configuration_error"


async def probe(base: str, path: str) -> tuple[int, dict[str, Any]]:
    """GET a probe; its status and JSON body."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(base + path) as response,
    ):
        return response.status, await response.json()


Answer = tuple[int, dict[str, Any]]


async def until(
    read: Callable[[], Awaitable[Answer]],
    accept: Callable[[int, dict[str, Any]], bool],
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Poll ``read`` until ``accept(status, body)``; that body."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = await read()
        if accept(status, body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"still {status}: {body}")
        await asyncio.sleep(0.05)


async def eventually(
    read: Callable[[], Awaitable[Answer]], status: int
) -> dict[str, Any]:
    """Poll ``read`` until it answers ``status``; that answer's body."""
    return await until(read, lambda got, _: got == status)


@dataclasses.dataclass
class Built:
    """A worker assembled by ``app.build``, its probes served."""

    parts: app.Parts
    base: str
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]

    def consume(self) -> None:
        """Start the consumer, as ``serve`` does."""
        self.tasks.append(
            asyncio.create_task(self.parts.consumer.run(self.stop))
        )

    async def ready(self) -> tuple[int, dict[str, Any]]:
        """``/readyz``."""
        return await probe(self.base, "/readyz")

    async def live(self) -> tuple[int, dict[str, Any]]:
        """``/livez``."""
        return await probe(self.base, "/livez")


async def _remove_topology(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        await delete_topology(await connection.channel(), settings)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def built_worker(
    settings: Settings, *, consume: bool = True
) -> AsyncIterator[Built]:
    """``app.build`` with the health server and heartbeat running."""
    parts = await app.build(settings)
    port = await parts.health.start("127.0.0.1", 0)
    stop = asyncio.Event()
    built = Built(
        parts,
        f"http://127.0.0.1:{port}",
        stop,
        [asyncio.create_task(parts.health.heartbeat(stop))],
    )
    if consume:
        built.consume()
    try:
        yield built
    finally:
        stop.set()
        await asyncio.wait_for(
            asyncio.gather(*built.tasks, return_exceptions=True), 30
        )
        await parts.health.stop()
        await parts.publisher.close()
        await parts.client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(parts.pool.close(), 10)
        await _remove_topology(settings)


# ---- readiness, condition by condition, on the real servers ---------------


@pytest.mark.servers
async def test_ready_once_consuming_with_every_condition_met(
    settings: Settings, db: Any
) -> None:
    """Consumer attached, database up, breaker closed: 200 and all true."""
    async with built_worker(settings) as w:
        body = await eventually(w.ready, 200)
        status, live = await w.live()

    assert body["ready"] is True
    assert body["consumer_attached"] is True
    assert body["database"] is True
    assert body["breaker_not_open"] is True
    assert body["certificates_loaded"] is True
    assert status == 200 and live["live"] is True


@pytest.mark.servers
async def test_not_ready_until_the_consumer_is_attached(
    settings: Settings, db: Any
) -> None:
    """No consumer yet: 503 for that reason alone; ready once it attaches."""
    async with built_worker(settings, consume=False) as w:
        status, before = await w.ready()
        live_status, _ = await w.live()
        w.consume()
        after = await eventually(w.ready, 200)

    assert status == 503
    assert before["consumer_attached"] is False
    assert before["database"] is True
    assert before["breaker_not_open"] is True
    assert live_status == 200
    assert after["consumer_attached"] is True


@pytest.mark.servers
async def test_open_breaker_is_not_ready_and_recovers(
    settings: Settings, db: Any
) -> None:
    """An open breaker: 503, consumption paused, still live; then ready.

    It closes the only way it can: a successful half-open probe.
    """
    async with built_worker(settings) as w:
        await eventually(w.ready, 200)
        for _ in range(settings.breaker_failures):
            w.parts.breaker.record_failure()
        status, opened = await w.ready()
        live_status, _ = await w.live()
        await until(w.ready, lambda _, b: b["consumer_attached"] is False)
        await until(w.ready, lambda _, b: b["breaker_not_open"] is True)
        probe = w.parts.breaker.acquire()
        w.parts.breaker.record_success(probe)
        closed = await eventually(w.ready, 200)

    assert status == 503 and opened["breaker_not_open"] is False
    assert live_status == 200
    assert probe is True
    assert w.parts.breaker.state is BreakerState.CLOSED
    assert closed["consumer_attached"] is True


@pytest.mark.servers
async def test_unreachable_database_is_not_ready_but_live(
    settings: Settings, db: Any
) -> None:
    """The pool gone: ``database`` false, liveness untouched."""
    async with built_worker(settings) as w:
        await eventually(w.ready, 200)
        await w.parts.pool.close()
        status, body = await w.ready()
        live_status, live = await w.live()

    assert status == 503
    assert body["database"] is False
    assert live_status == 200 and live["live"] is True


async def _black_hole() -> tuple[asyncio.Server, int]:
    # Accepts connections and never says a word, like a hung server.
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_hanging_database_answers_not_ready_within_the_timeout() -> None:
    """A database that never answers costs the probe about 1.5 s, not more."""
    server, port = await _black_hole()
    pool = await create_pool(
        f"postgresql://postgres@127.0.0.1:{port}/x",
        min_size=0,
        connect_timeout_s=30.0,
    )
    health = Health(HandlerClock(10.0))
    health.add_check("database", lambda: ping(pool, timeout_s=30.0))
    await health.start("127.0.0.1", 0)
    try:
        started = time.monotonic()
        base = f"http://127.0.0.1:{health.port}"
        status, body = await probe(base, "/readyz")
        took = time.monotonic() - started
    finally:
        await health.stop()
        pool.terminate()
        server.close()

    assert status == 503 and body["database"] is False
    assert took < 2.5


@pytest.mark.servers
async def test_https_without_a_client_certificate_is_not_ready(
    settings: Settings, db: Any
) -> None:
    """INSi over https with no certificate loaded: never ready."""
    https = dataclasses.replace(settings, insi_url="https://127.0.0.1:9/lps")
    async with built_worker(https) as w:
        await until(w.ready, lambda _, b: b["consumer_attached"] is True)
        status, body = await w.ready()

    assert status == 503
    assert body["certificates_loaded"] is False
    assert body["consumer_attached"] is True


@pytest.mark.servers
async def test_configuration_fault_is_not_ready_and_halts_consumption(
    settings: Settings, db: Any
) -> None:
    """INSi refuses the IDAM: readiness false with the reason, gauge at 1."""
    simulator = Simulator(allowed_idam=("99999999",))
    url = await simulator.start("127.0.0.1", 0)
    try:
        configured = dataclasses.replace(settings, insi_url=url)
        async with built_worker(configured) as w:
            await eventually(w.ready, 200)
            _, body = request_body(ADRTROIS, document=CN)
            await w.parts.pipeline.handle(Delivery(body=body))
            status, ready = await w.ready()
            halted = await until(
                w.ready, lambda _, b: b["consumer_attached"] is False
            )
            live_status, _ = await w.live()
            gauge = metrics.REGISTRY.get_sample_value(CONFIGURATION_GAUGE)
    finally:
        await simulator.stop()

    assert status == 503
    assert ready["configuration"] is False
    assert "fault_configuration" in ready["configuration_error"]
    assert halted["consumer_attached"] is False
    assert live_status == 200
    assert gauge == 1.0
    assert simulator.stats.total == 1


# ---- liveness -------------------------------------------------------------


async def _served(health: Health) -> str:
    await health.start("127.0.0.1", 0)
    return f"http://127.0.0.1:{health.port}"


async def test_stuck_handler_fails_liveness_until_it_ends() -> None:
    """A handler past its budget and grace: 503; gone: 200 again."""
    clock = HandlerClock(budget_s=0.05, grace_s=0.05)
    health = Health(clock)
    stop = asyncio.Event()
    beat = asyncio.create_task(health.heartbeat(stop))
    base = await _served(health)
    try:
        clock.start(1)
        fresh_status, _ = await probe(base, "/livez")
        await asyncio.sleep(0.2)
        stuck_status, stuck = await probe(base, "/livez")
        clock.stop(1)
        freed_status, _ = await probe(base, "/livez")
    finally:
        stop.set()
        await beat
        await health.stop()

    assert fresh_status == 200
    assert stuck_status == 503 and stuck["stuck_handlers"] == 1
    assert freed_status == 200


async def test_silent_heartbeat_fails_liveness() -> None:
    """No heartbeat for longer than the allowed lag: 503."""
    health = Health(HandlerClock(10.0), max_lag_s=0.1)
    stop = asyncio.Event()
    beat = asyncio.create_task(health.heartbeat(stop))
    base = await _served(health)
    try:
        await asyncio.sleep(0.6)
        beating_status, _ = await probe(base, "/livez")
        stop.set()
        await beat
        await asyncio.sleep(0.8)
        silent_status, silent = await probe(base, "/livez")
    finally:
        await health.stop()

    assert beating_status == 200
    assert silent_status == 503
    assert silent["loop_silent_s"] > 0.6


async def test_blocked_event_loop_cannot_answer_the_probe() -> None:
    """A loop stuck in a blocking call answers nothing: the probe times out.

    The probes are served by the worker's own loop, so a loop that no
    longer turns fails liveness by the probe's timeout.
    """
    loop = asyncio.new_event_loop()
    health = Health(HandlerClock(10.0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        started = asyncio.run_coroutine_threadsafe(
            health.start("127.0.0.1", 0), loop
        )
        port = await asyncio.wrap_future(started)
        base = f"http://127.0.0.1:{port}"
        ok_status, _ = await probe(base, "/livez")
        loop.call_soon_threadsafe(time.sleep, 1.5)
        await asyncio.sleep(0.1)
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.5):
                await probe(base, "/livez")
        await asyncio.sleep(1.2)
        after_status, _ = await probe(base, "/livez")
    finally:
        stopped = asyncio.run_coroutine_threadsafe(health.stop(), loop)
        await asyncio.wrap_future(stopped)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()

    assert ok_status == 200
    assert after_status == 200


# ---- the readiness machinery ----------------------------------------------


async def test_checks_run_side_by_side_each_bounded() -> None:
    """Two slow checks cost one timeout, and a hung one is a "no"."""

    async def slow() -> bool:
        await asyncio.sleep(0.4)
        return True

    async def hung() -> bool:
        await asyncio.Event().wait()
        return True

    health = Health(HandlerClock(10.0), check_timeout_s=0.6)
    health.add_check("a", slow)
    health.add_check("b", slow)
    health.add_check("c", hung)

    started = time.monotonic()
    ok, results = await health.ready()
    took = time.monotonic() - started

    assert results == {"a": True, "b": True, "c": False}
    assert ok is False
    assert took < 1.0


async def test_raising_check_is_a_no_not_a_crash() -> None:
    """A check that raises reads as false; the others still answer."""

    def broken() -> bool:
        raise RuntimeError("boom")

    health = Health(HandlerClock(10.0))
    health.add_check("broken", broken)
    health.add_check("fine", lambda: True)

    ok, results = await health.ready()

    assert ok is False
    assert results == {"broken": False, "fine": True}


async def test_configuration_error_shows_in_readiness_and_gauge() -> None:
    """A fault: not ready, with the reason, gauge at 1; cleared: 0."""
    health = Health(HandlerClock(10.0))
    health.add_check("fine", lambda: True)

    health.configuration_error = "INSi refused the caller (certificate)"
    ok, results = await health.ready()
    raised = metrics.REGISTRY.get_sample_value(CONFIGURATION_GAUGE)
    health.configuration_error = None
    cleared = metrics.REGISTRY.get_sample_value(CONFIGURATION_GAUGE)

    assert ok is False
    assert results["configuration"] is False
    assert results["configuration_error"].endswith("(certificate)")
    assert raised == 1.0 and cleared == 0.0


async def test_metrics_endpoint_serves_the_registry() -> None:
    """``/metrics`` is Prometheus text with the worker's metrics."""
    health = Health(HandlerClock(10.0))
    base = await _served(health)
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(base + "/metrics") as response,
        ):
            text = await response.text()
            kind = response.headers["Content-Type"]
    finally:
        await health.stop()

    assert kind.startswith("text/plain")
    assert "ins_worker_configuration_error 0.0" in text
    assert 'ins_worker_breaker_state{state="closed"}' in text


# ---- certificates over time ----------------------------------------------


def _certificate(not_before: datetime, not_after: datetime) -> Any:
    return ClientCertificate(
        subject_cn="INSI-AUTO",
        subject_ou="TESTOU",
        issuer_cn="TEST CA",
        serial="2a",
        sha256="11" * 32,
        not_before=not_before,
        not_after=not_after,
    )


NOW = datetime(2026, 12, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("certificate", "required", "ready"),
    [
        (None, False, True),
        (None, True, False),
        (_certificate(NOW - timedelta(days=1), NOW + timedelta(days=1)),
         True, True),
        (_certificate(NOW - timedelta(days=9), NOW - timedelta(days=1)),
         True, False),
        (_certificate(NOW + timedelta(days=1), NOW + timedelta(days=9)),
         True, False),
    ],
    ids=["plain-http", "https-missing", "valid", "expired", "not-yet"],
)  # fmt: skip
def test_certificate_readiness_follows_its_validity(
    certificate: ClientCertificate | None, required: bool, ready: bool
) -> None:
    """Loaded where needed and within its dates, or not ready."""
    watch = CertificateWatch(certificate, required=required, clock=lambda: NOW)

    assert watch.ready() is ready


def test_certificate_check_warns_within_thirty_days_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """40 days left: silent; 20: a warning; expired: an error."""
    caplog.set_level("INFO", logger="worker.certwatch")
    now = [NOW]
    cert = _certificate(NOW - timedelta(days=300), NOW + timedelta(days=40))
    watch = CertificateWatch(cert, required=True, clock=lambda: now[0])

    watch.check()
    quiet = list(caplog.records)
    now[0] = NOW + timedelta(days=20)
    watch.check()
    now[0] = NOW + timedelta(days=41)
    watch.check()

    assert quiet == []
    [warning, error] = caplog.records
    assert warning.levelname == "WARNING"
    assert warning.getMessage().endswith("days_left=20")
    assert error.levelname == "ERROR"
    assert error.getMessage().startswith("client_certificate_expired")


async def test_certificate_watch_runs_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The periodic check runs at once, then each interval, until stop."""
    caplog.set_level("WARNING", logger="worker.certwatch")
    cert = _certificate(NOW - timedelta(days=300), NOW + timedelta(days=3))
    watch = CertificateWatch(cert, required=True, clock=lambda: NOW)
    stop = asyncio.Event()

    task = asyncio.create_task(watch.run(stop, interval_s=0.05))
    await asyncio.sleep(0.18)
    stop.set()
    await asyncio.wait_for(task, 1.0)

    assert 3 <= len(caplog.records) <= 5
