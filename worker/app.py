"""The worker process: builds every part, runs them, stops them in order.

Start-up refuses to go on with a configuration that cannot work (pending
migrations, a production set-up without mutual TLS, a bad certificate).
On SIGTERM: stop taking deliveries, return those not started, finish
those in flight within the budget, flush the outbox, close, exit 0. A
second SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from worker import certwatch, metrics
from worker.breaker import BreakerState, CircuitBreaker
from worker.broker import Publisher
from worker.consumer import Consumer
from worker.errors import ConfigurationError, InsiError, StoreUnavailable
from worker.gateway import InsiGateway
from worker.health import HandlerClock, Health
from worker.insi import tls
from worker.insi.client import InsiClient
from worker.insi.factory import make_client
from worker.outbox import OutboxRelay
from worker.outcomes import OutcomeRecorder
from worker.pipeline import Delivery, Disposition, Pipeline
from worker.ratelimit import RateLimiter
from worker.settings import Settings
from worker.store import migrate
from worker.store.pool import create_pool, ping

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Parts:
    """Everything one worker process is made of."""

    pool: asyncpg.Pool[Any]
    client: InsiClient
    breaker: CircuitBreaker
    publisher: Publisher
    relay: OutboxRelay
    pipeline: Pipeline
    consumer: Consumer
    health: Health
    certificate: tls.ClientCertificate | None
    watch: certwatch.CertificateWatch


def _breaker_metrics(old: BreakerState, new: BreakerState) -> None:
    for state in BreakerState:
        metrics.breaker_state.labels(state=state.value).set(
            1 if state is new else 0
        )
    metrics.breaker_transitions.labels(to=new.value).inc()


async def build(settings: Settings) -> Parts:
    """Check the configuration and assemble the parts (nothing runs yet)."""
    now = datetime.now(UTC)
    client, certificate = make_client(settings, now)
    watch = certwatch.CertificateWatch.for_settings(settings, certificate)
    watch.publish()
    metrics.declare_retry_tiers(len(settings.retry_delays_s))

    waiting = await migrate.pending(settings.database_url)
    if waiting:
        raise ConfigurationError(
            f"database schema is behind: run `ins-worker migrate` "
            f"(pending: {', '.join(map(str, waiting))})"
        )
    pool = await create_pool(
        settings.database_url, max_size=max(4, settings.concurrency // 2 + 2)
    )

    health = Health(HandlerClock(settings.message_budget_s))
    breaker = CircuitBreaker(
        settings.breaker_failures, settings.breaker_reset_s
    )
    breaker.on_change(_breaker_metrics)

    def configuration_fault(error: InsiError) -> None:
        health.configuration_error = f"INSi refused the caller ({error.kind})"
        logger.error("insi_configuration_fault kind=%s", error.kind)
        consumer.recheck()

    gateway = InsiGateway(
        client,
        breaker,
        RateLimiter(pool, settings.rate_limit_per_s),
        max_attempts=settings.insi_attempts,
        backoff_initial_s=settings.insi_backoff_s,
        on_configuration_fault=configuration_fault,
    )
    publisher = Publisher(settings)
    relay = OutboxRelay(
        pool,
        publisher,
        exchange=settings.events_exchange,
        database_url=settings.database_url,
        batch=settings.outbox_batch,
        poll_s=settings.outbox_poll_s,
    )
    recorder = OutcomeRecorder(
        settings,
        pool,
        on_commit=relay.wake,
        certificate=f"sha256:{certificate.sha256}" if certificate else None,
    )
    pipeline = Pipeline(settings, pool, gateway, publisher, recorder)

    async def handle(delivery: Delivery) -> Disposition:
        key = id(delivery)
        health_clock.start(key)
        try:
            return await pipeline.handle(delivery)
        finally:
            health_clock.stop(key)

    health_clock = health.clock

    async def store_ok() -> bool:
        return await ping(pool)

    consumer = Consumer(
        settings,
        handle,
        breaker,
        store_ok,
        halted=lambda: health.configuration_error,
    )
    health.add_check("consumer_attached", lambda: consumer.attached)
    health.add_check("database", store_ok)
    # A resource alarm blocks publishing (events, retries, dead letters)
    # while acks go on: visible here, not a stall.
    health.add_check(
        "broker_not_blocked",
        lambda: not (consumer.blocked or publisher.blocked),
    )
    health.add_check(
        "breaker_not_open", lambda: breaker.state is not BreakerState.OPEN
    )
    health.add_check("certificates_loaded", watch.ready)
    return Parts(
        pool,
        client,
        breaker,
        publisher,
        relay,
        pipeline,
        consumer,
        health,
        certificate,
        watch,
    )


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    install_signals: bool = True,
    ready: asyncio.Event | None = None,
) -> int:
    """Run the worker until ``stop`` (or SIGTERM); return the exit status."""
    parts = await build(settings)
    if install_signals:
        _install_signals(stop)

    await parts.health.start(settings.health_host, settings.health_port)
    relay_stop = asyncio.Event()
    tasks = [
        asyncio.create_task(parts.consumer.run(stop), name="consumer"),
        asyncio.create_task(parts.relay.run(relay_stop), name="relay"),
        asyncio.create_task(parts.health.heartbeat(relay_stop), name="beat"),
        asyncio.create_task(parts.watch.run(relay_stop), name="certwatch"),
    ]
    if ready is not None:
        ready.set()
    logger.info("worker_started queue=%s", settings.requests_queue)

    try:
        await tasks[0]
    finally:
        flushed = await parts.relay.flush(
            min(10.0, settings.shutdown_budget_s)
        )
        relay_stop.set()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        await _close(parts)
        logger.info("worker_stopped outbox_flushed=%s", flushed)
    return 0


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("second_signal signal=%d exiting_now", signum)
            os._exit(1)
        logger.info("shutdown_requested signal=%d", signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


async def _close(parts: Parts) -> None:
    with contextlib.suppress(Exception):
        await parts.publisher.close()
    with contextlib.suppress(Exception):
        await parts.client.close()
    with contextlib.suppress(Exception):
        await parts.health.stop()
    with contextlib.suppress(StoreUnavailable, Exception):
        await asyncio.wait_for(parts.pool.close(), 10.0)
