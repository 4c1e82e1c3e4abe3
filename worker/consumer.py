"""The consumer: deliveries in, at most ``concurrency`` at a time, acks out.

It owns the consuming connection and keeps it right: it declares the
topology, consumes with manual acks and a bounded prefetch, reconnects
after any loss, and a watchdog checks that the consumer is really
attached (a broker-side cancel or a deleted queue is repaired by
starting over). While the INSi breaker is open it stops consuming:
messages stay ready in the queue; half-open consumes one at a time so
that exactly one probe reaches INSi.

Every return of a message to a quorum queue counts toward its delivery
limit, so a message is never requeued while this process still consumes
for a reason that would fail it again at once (database or broker
unavailable, breaker open): consumption stops first, then the message
goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
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

#: timeout of one AMQP operation of the consumer (qos, consume, cancel)
OPERATION_TIMEOUT_S = 5.0

#: timeout of connecting and restoring the topology
CONNECT_TIMEOUT_S = 20.0

#: first and longest pause after a dependency failed a message
HOLD_S = 1.0
HOLD_MAX_S = 15.0

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
        self._prefetch = 0
        self._waiting: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._lost = asyncio.Event()
        self._recheck = asyncio.Event()
        self._pause_reason: str | None = None
        self._consume_lock = asyncio.Lock()
        self._holds = 0
        self._held_until = 0.0
        self._held_for = ""
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
            except Exception as exc:
                if not isinstance(exc, _LOSS):
                    # Not a known loss: the loop starting over is the
                    # repair; the traceback says what to fix.
                    logger.exception("consumer_failed")
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
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            self._connection = await open_connection(
                self._settings.amqp_url, "consume"
            )
            self._connection.close_callbacks.add(self._on_close)
            self._channel = await self._connection.channel(
                publisher_confirms=False
            )
            self._channel.close_callbacks.add(self._on_close)
            underlay = await self._channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(self._on_cancelled)
            self._queue = await topology.declare(
                self._channel, self._settings
            )
        logger.info(
            "consumer_connected queue=%s", self._settings.requests_queue
        )

    def _on_close(self, *_: Any) -> None:
        self._lost.set()

    def _on_cancelled(self, *_: Any) -> None:
        # The broker cancelled the consumer (queue deleted, node down):
        # start over at once rather than at the next watchdog tick.
        logger.error("consumer_cancelled_by_broker tag=%s", self._tag)
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
        async with self._consume_lock:
            await self._stop_consuming("shutdown")

    def _next_check_s(self) -> float:
        # An open breaker turns half-open by the clock, a hold ends by
        # the clock, a database outage ends unannounced: look again then.
        until_probe = self._breaker.seconds_until_probe()
        if self._breaker.state is BreakerState.OPEN:
            return max(0.05, min(WATCHDOG_S, until_probe))
        held = self._held_until - time.monotonic()
        if held > 0:
            return max(0.05, min(WATCHDOG_S, held))
        if self._pause_reason == "database_unavailable":
            return HOLD_S
        return WATCHDOG_S

    async def _apply_pause_rules(self) -> None:
        async with self._consume_lock:
            reason = await self._pause_reason_now()
            if reason is not None:
                await self._stop_consuming(reason)
                return
            state = self._breaker.state
            prefetch = 1 if state is BreakerState.HALF_OPEN else None
            await self._start_consuming(prefetch)

    async def _pause_reason_now(self) -> str | None:
        # A configuration fault (INSi refused who we are) fails every
        # message alike: keep them in the queue until a human fixes it.
        if self._halted() is not None:
            return "configuration_error"
        if self._breaker.state is BreakerState.OPEN:
            return "breaker_open"
        if time.monotonic() < self._held_until:
            return self._held_for
        if not await self._store_ok():
            return "database_unavailable"
        return None

    async def _start_consuming(self, prefetch: int | None) -> None:
        assert self._channel is not None and self._queue is not None
        # No more deliveries than handlers: one held beyond them would
        # only wait, and every pause would send it back, each return
        # counting toward its delivery limit.
        wanted = prefetch or min(
            self._settings.prefetch, self._settings.concurrency
        )
        if self._tag is not None and self._prefetch != wanted:
            # The broker fixes a consumer's prefetch when it is created:
            # a new consumer is the only way to change it. Deliveries of
            # the old one stay valid on the channel.
            tag, self._tag = self._tag, None
            await self._queue.cancel(tag, timeout=OPERATION_TIMEOUT_S)
        if self._tag is None:
            await self._channel.set_qos(
                prefetch_count=wanted, timeout=OPERATION_TIMEOUT_S
            )
            self._tag = await self._queue.consume(
                self._on_message, timeout=OPERATION_TIMEOUT_S
            )
            self._prefetch = wanted
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
                await self._queue.cancel(tag, timeout=OPERATION_TIMEOUT_S)
        await self._return_waiting()

    async def _hold(self, reason: str) -> None:
        """Stop consuming for a while before a message goes back."""
        self._holds += 1
        pause = min(HOLD_MAX_S, HOLD_S * 2 ** min(self._holds - 1, 4))
        if time.monotonic() + pause > self._held_until:
            self._held_until = time.monotonic() + pause
            self._held_for = reason
        async with self._consume_lock:
            await self._stop_consuming(reason)
        self._recheck.set()

    async def _watchdog(self) -> None:
        if self._tag is None or self._channel is None:
            return
        underlay = await self._channel.get_underlay_channel()
        if self._tag not in getattr(underlay, "consumers", {}):
            logger.error("consumer_cancelled_by_broker tag=%s", self._tag)
            raise BrokerUnavailable("consumer no longer attached")
        # A deleted queue closes the channel here, and the loop starts over.
        queue = await self._channel.declare_queue(
            self._settings.requests_queue,
            passive=True,
            timeout=OPERATION_TIMEOUT_S,
        )
        if not queue.declaration_result.consumer_count:
            logger.error("consumer_unknown_to_broker tag=%s", self._tag)
            raise BrokerUnavailable("the broker lists no consumer")

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
            await self._hold("database_unavailable")
            disposition = Disposition.REQUEUE
        except BrokerUnavailable as exc:
            logger.warning("publish_unavailable kind=%s", exc)
            await self._hold("broker_unavailable")
            disposition = Disposition.REQUEUE
        except InsWorkerError:
            logger.exception("message_failed")
            disposition = Disposition.REQUEUE
        except Exception:
            # A bug: requeue; the quorum queue's delivery limit stops a
            # message that always fails and dead-letters it.
            logger.exception("message_crashed")
            disposition = Disposition.REQUEUE
        if disposition is Disposition.ACK:
            self._holds = 0
        elif self._breaker.state is BreakerState.OPEN:
            # Turned away by the open breaker: stop consuming before it
            # goes back, or it would come straight back to fail again.
            async with self._consume_lock:
                await self._stop_consuming("breaker_open")
        await self._settle(message, disposition)

    async def _settle(
        self, message: AbstractIncomingMessage, disposition: Disposition
    ) -> None:
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S):
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
        async with self._consume_lock:
            await self._stop_consuming("shutdown")
        if self._running:
            _done, pending = await asyncio.wait(
                set(self._running), timeout=budget_s
            )
            if pending:
                logger.warning(
                    "drain_timeout unfinished=%d waiting_in=%s",
                    len(pending),
                    ",".join(sorted({_where(t) for t in pending})),
                )
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


def _where(task: asyncio.Task[None]) -> str:
    # The innermost await in the project's own code: what a handler that
    # outlived the budget was waiting for.
    found = "unknown"
    step: Any = task.get_coro()
    while step is not None:
        frame = getattr(step, "cr_frame", None)
        if frame is not None and "/worker/" in frame.f_code.co_filename:
            name = frame.f_code.co_filename.rsplit("/", 1)[-1]
            found = f"{name}:{frame.f_code.co_name}:{frame.f_lineno}"
        step = getattr(step, "cr_await", None)
    return found
