"""The consumer: deliveries in, at most ``concurrency`` at a time, acks out.

It owns the consuming connection and keeps it right: it declares the
topology, consumes with manual acks and a bounded prefetch, reconnects
after any loss, and a watchdog checks that the consumer is really
attached (a broker-side cancel or a deleted queue is repaired by
starting over). While the INSi breaker is open it stops consuming:
messages stay ready in the queue; half-open consumes one at a time so
that exactly one probe reaches INSi.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from worker import metrics, topology
from worker.breaker import BreakerState, CircuitBreaker
from worker.broker import CONNECTION_ERRORS, is_blocked, open_connection
from worker.errors import BrokerUnavailable, InsWorkerError, StoreUnavailable
from worker.pipeline import Delivery, Disposition
from worker.settings import Settings

logger = logging.getLogger(__name__)

Handler = Callable[[Delivery], Awaitable[Disposition]]

WATCHDOG_S = 5.0

_LOSS: tuple[type[Exception], ...] = (BrokerUnavailable, *CONNECTION_ERRORS)
_SETTLE_ERRORS: tuple[type[Exception], ...] = (
    *CONNECTION_ERRORS,
    aio_pika.exceptions.MessageProcessError,
)


class Consumer:
    """Runs the handler over the requests queue until told to stop."""

    def __init__(
        self,
        settings: Settings,
        handler: Handler,
        breaker: CircuitBreaker,
        store_ok: Callable[[], Awaitable[bool]],
        halted: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._halted = halted
        self._handler = handler
        self._breaker = breaker
        self._store_ok = store_ok
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._waiting: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._lost = asyncio.Event()
        self._recheck = asyncio.Event()
        self._pause_reason: str | None = None
        self.started: dict[int, float] = {}

    @property
    def attached(self) -> bool:
        """Whether a consumer is registered on an open channel."""
        return (
            self._tag is not None
            and self._channel is not None
            and not self._channel.is_closed
        )

    @property
    def paused(self) -> str | None:
        """Why consumption is paused, if it is."""
        return self._pause_reason

    @property
    def blocked(self) -> bool:
        """Whether the broker blocks the consuming connection."""
        return self._connection is not None and is_blocked(self._connection)

    @property
    def in_flight(self) -> int:
        """Deliveries being handled now."""
        return len(self._running)

    def recheck(self) -> None:
        """Re-read the pause rules now rather than at the next watchdog."""
        self._recheck.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; reconnect after every loss."""
        failures = 0
        while not stop.is_set():
            try:
                await self._connect()
                failures = 0
                await self._supervise(stop)
            except _LOSS as exc:
                failures += 1
                pause = min(30.0, 0.5 * 2 ** min(failures, 6))
                pause = random.uniform(pause / 2, pause)
                logger.warning(
                    "consumer_connection_lost kind=%s attempt=%d"
                    " retry_in_s=%.1f",
                    type(exc).__name__,
                    failures,
                    pause,
                )
                await self._drop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        await self.drain(self._settings.shutdown_budget_s)

    async def _connect(self) -> None:
        self._lost.clear()
        self._connection = await open_connection(
            self._settings.amqp_url, "consume"
        )
        self._connection.close_callbacks.add(self._on_close)
        self._channel = await self._connection.channel(
            publisher_confirms=False
        )
        self._channel.close_callbacks.add(self._on_close)
        await self._channel.set_qos(prefetch_count=self._settings.prefetch)
        self._queue = await topology.declare(self._channel, self._settings)
        logger.info(
            "consumer_connected queue=%s", self._settings.requests_queue
        )

    def _on_close(self, *_: Any) -> None:
        self._lost.set()

    async def _supervise(self, stop: asyncio.Event) -> None:
        # Consume when allowed; re-check on every breaker change, on a
        # lost connection, and every few seconds (the watchdog).
        while not stop.is_set():
            self._recheck.clear()
            await self._apply_pause_rules()
            waiters = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._lost.wait()),
                asyncio.ensure_future(self._recheck.wait()),
                asyncio.ensure_future(self._breaker.wait_change()),
            ]
            try:
                await asyncio.wait(
                    waiters,
                    timeout=self._next_check_s(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self._lost.is_set():
                raise BrokerUnavailable("consuming connection closed")
            await self._watchdog()
        await self._stop_consuming("shutdown")

    def _next_check_s(self) -> float:
        # An open breaker turns half-open by the clock: look again then.
        until_probe = self._breaker.seconds_until_probe()
        if self._breaker.state is BreakerState.OPEN:
            return max(0.05, min(WATCHDOG_S, until_probe))
        return WATCHDOG_S

    async def _apply_pause_rules(self) -> None:
        # A configuration fault (INSi refused who we are) fails every
        # message alike: keep them in the queue until a human fixes it.
        if self._halted() is not None:
            await self._stop_consuming("configuration_error")
            return
        state = self._breaker.state
        if state is BreakerState.OPEN:
            await self._stop_consuming("breaker_open")
            return
        if not await self._store_ok():
            await self._stop_consuming("database_unavailable")
            return
        prefetch = 1 if state is BreakerState.HALF_OPEN else None
        await self._start_consuming(prefetch)

    async def _start_consuming(self, prefetch: int | None) -> None:
        assert self._channel is not None and self._queue is not None
        wanted = prefetch or self._settings.prefetch
        await self._channel.set_qos(prefetch_count=wanted)
        if self._tag is None:
            self._tag = await self._queue.consume(self._on_message)
            metrics.consumer_attached.set(1)
            logger.info(
                "consuming queue=%s prefetch=%d",
                self._settings.requests_queue,
                wanted,
            )
        self._pause_reason = None

    async def _stop_consuming(self, reason: str) -> None:
        if self._pause_reason != reason:
            logger.warning("consumption_paused reason=%s", reason)
        self._pause_reason = reason
        tag, self._tag = self._tag, None
        metrics.consumer_attached.set(0)
        if tag is not None and self._queue is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._queue.cancel(tag, timeout=5.0)
        await self._return_waiting()

    async def _watchdog(self) -> None:
        if self._tag is None or self._channel is None:
            return
        underlay = await self._channel.get_underlay_channel()
        if self._tag not in getattr(underlay, "consumers", {}):
            logger.error("consumer_cancelled_by_broker tag=%s", self._tag)
            raise BrokerUnavailable("consumer no longer attached")
        # A deleted queue closes the channel here, and the loop starts over.
        await self._channel.declare_queue(
            self._settings.requests_queue, passive=True, timeout=5.0
        )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        await self._waiting.put(message)
        task = asyncio.create_task(self._work())
        self._running.add(task)
        metrics.in_flight.set(len(self._running))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        metrics.in_flight.set(len(self._running))

    async def _work(self) -> None:
        async with self._slots:
            try:
                message = self._waiting.get_nowait()
            except asyncio.QueueEmpty:
                return  # returned to the queue by a pause meanwhile
            await self._handle(message)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        delivery = Delivery(
            body=message.body,
            headers=dict(message.headers or {}),
            routing_key=message.routing_key or "",
            message_id=message.message_id,
            redelivered=bool(message.redelivered),
        )
        try:
            disposition = await self._handler(delivery)
        except StoreUnavailable as exc:
            logger.warning("store_unavailable kind=%s", exc)
            disposition = Disposition.REQUEUE
            self._recheck.set()
        except BrokerUnavailable as exc:
            logger.warning("publish_unavailable kind=%s", exc)
            self._recheck.set()
            disposition = Disposition.REQUEUE
        except InsWorkerError:
            logger.exception("message_failed")
            disposition = Disposition.REQUEUE
        except Exception:
            # A bug: requeue; the quorum queue's delivery limit stops a
            # message that always fails and dead-letters it.
            logger.exception("message_crashed")
            disposition = Disposition.REQUEUE
        await self._settle(message, disposition)

    async def _settle(
        self, message: AbstractIncomingMessage, disposition: Disposition
    ) -> None:
        try:
            if disposition is Disposition.ACK:
                await message.ack()
            else:
                await message.nack(requeue=True)
        except _SETTLE_ERRORS:
            # The channel is gone: the broker redelivers; the inbox makes
            # that harmless.
            logger.warning("settle_failed disposition=%s", disposition.value)

    async def _return_waiting(self) -> None:
        while True:
            try:
                message = self._waiting.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self._settle(message, Disposition.REQUEUE)

    async def drain(self, budget_s: float) -> None:
        """Stop taking work, return what has not started, finish the rest."""
        await self._stop_consuming("shutdown")
        if self._running:
            _done, pending = await asyncio.wait(
                set(self._running), timeout=budget_s
            )
            if pending:
                logger.warning("drain_timeout unfinished=%d", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        await self._drop()

    async def _drop(self) -> None:
        # Deliveries of a lost channel cannot be settled: the broker
        # requeues them itself.
        while not self._waiting.empty():
            self._waiting.get_nowait()
        self._tag = None
        metrics.consumer_attached.set(0)
        connection, self._connection = self._connection, None
        self._channel = None
        self._queue = None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5.0)
