"""The consumer on the real broker: pauses, holds, watchdog, drain.

Each test runs a :class:`~worker.consumer.Consumer` in this process with
a handler of its own, so that what is pinned is the consumer's part:
when it takes deliveries, when it gives them back, and what the broker
sees meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from worker import topology
from worker.breaker import BreakerState, CircuitBreaker
from worker.consumer import Consumer
from worker.errors import StoreUnavailable
from worker.pipeline import Delivery, Disposition
from worker.settings import Settings

pytestmark = pytest.mark.servers

Handler = Callable[[Delivery], Awaitable[Disposition]]


@dataclasses.dataclass
class Probe:
    """A consumer under test, and the broker as the test sees it."""

    consumer: Consumer
    breaker: CircuitBreaker
    connection: aio_pika.abc.AbstractConnection
    channel: aio_pika.abc.AbstractChannel
    settings: Settings
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def publish(self, count: int) -> None:
        """``count`` messages straight into the requests queue."""
        for i in range(count):
            await self.channel.default_exchange.publish(
                aio_pika.Message(f"m{i}".encode(), message_id=f"m{i}"),
                routing_key=self.settings.requests_queue,
            )

    async def queue_state(self) -> tuple[int, int]:
        """(ready messages, consumers) as the broker counts them.

        A channel of its own: asking about a deleted queue closes it.
        """
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(
                self.settings.requests_queue, passive=True
            )
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0, 0
        result = queue.declaration_result
        await channel.close()
        return int(result.message_count or 0), int(result.consumer_count or 0)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0
) -> None:
    """Wait until ``check`` holds; fail past the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@contextlib.asynccontextmanager
async def consuming(
    settings: Settings,
    handler: Handler,
    *,
    breaker: CircuitBreaker | None = None,
    store_ok: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[Probe]:
    """A consumer on the test vhost, its queues removed afterwards."""
    breaker = breaker or CircuitBreaker(5, 30.0)

    async def always() -> bool:
        return True

    consumer = Consumer(settings, handler, breaker, store_ok or always)
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    channel = await connection.channel()
    await topology.declare(channel, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    probe = Probe(
        consumer, breaker, connection, channel, settings, stop, task
    )
    try:
        await eventually(lambda: _attached(probe))
        yield probe
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        for name in (settings.requests_queue, settings.dead_letter_queue):
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        for tier in topology.retry_tiers(settings):
            with contextlib.suppress(Exception):
                await channel.queue_delete(tier.queue)
        await connection.close()


async def _attached(probe: Probe) -> bool:
    return probe.consumer.attached and (await probe.queue_state())[1] == 1


class Gate:
    """A handler that holds every delivery until released."""

    def __init__(self) -> None:
        self.entered: list[Delivery] = []
        self.finished: list[Delivery] = []
        self.release = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> Disposition:
        self.entered.append(delivery)
        await self.release.wait()
        self.finished.append(delivery)
        return Disposition.ACK


async def test_open_breaker_stops_consumption_and_messages_stay_ready(
    settings: Settings,
) -> None:
    """While open: no consumer, every message ready, none delivered."""
    gate = Gate()
    gate.release.set()
    breaker = CircuitBreaker(1, 2.0)
    async with consuming(settings, gate, breaker=breaker) as probe:
        breaker.record_failure()
        await eventually(lambda: _no_consumer(probe))
        await probe.publish(5)

        samples = []
        for _ in range(5):
            samples.append(await probe.queue_state())
            await asyncio.sleep(0.2)

        assert samples == [(5, 0)] * 5
        assert gate.entered == []
        assert probe.consumer.paused == "breaker_open"


async def test_half_open_probe_success_resumes_at_full_prefetch(
    settings: Settings,
) -> None:
    """Half-open takes one, then the full prefetch; none delivered twice."""
    settings = dataclasses.replace(settings, prefetch=8, concurrency=16)
    gate = Gate()
    breaker = CircuitBreaker(1, 0.3)
    async with consuming(settings, gate, breaker=breaker) as probe:
        breaker.record_failure()
        await eventually(lambda: _no_consumer(probe))
        await probe.publish(10)
        await eventually(lambda: _entered(gate, 1))
        await asyncio.sleep(0.3)
        assert len(gate.entered) == 1
        assert breaker.state is BreakerState.HALF_OPEN

        breaker.record_success(breaker.acquire())
        await eventually(lambda: _entered(gate, 9))

        assert len(gate.entered) == 9
        gate.release.set()
        await eventually(lambda: _entered_finished(gate, 10))
        counts = {d.headers.get("x-delivery-count", 0) for d in gate.entered}
        assert counts == {0}


async def test_database_failure_holds_the_message_instead_of_spinning(
    settings: Settings,
) -> None:
    """StoreUnavailable: paused before the requeue, retried once back."""
    down = False
    calls: list[Delivery] = []

    async def handler(delivery: Delivery) -> Disposition:
        nonlocal down
        calls.append(delivery)
        if len(calls) == 1:
            down = True
        if down:
            raise StoreUnavailable("database gone")
        return Disposition.ACK

    async def store_ok() -> bool:
        return not down

    async with consuming(settings, handler, store_ok=store_ok) as probe:
        await probe.publish(1)
        await eventually(lambda: _count(calls, 1))
        await asyncio.sleep(2.0)
        assert len(calls) == 1
        assert await probe.queue_state() == (1, 0)

        down = False
        await eventually(lambda: _count(calls, 2))
        await asyncio.sleep(0.5)

        assert len(calls) == 2
        assert calls[1].headers.get("x-delivery-count") == 1
        assert await probe.queue_state() == (0, 1)


async def test_watchdog_reattaches_after_the_queue_is_deleted(
    settings: Settings,
) -> None:
    """``rabbitmqctl delete_queue``: redeclared, consumed again."""
    gate = Gate()
    gate.release.set()
    async with consuming(settings, gate) as probe:
        vhost = settings.amqp_url.rsplit("/", 1)[-1]
        deleted = await asyncio.create_subprocess_exec(
            *("rabbitmqctl", "-q", "-p", vhost, "delete_queue"),
            settings.requests_queue,
        )
        assert await deleted.wait() == 0
        assert await probe.queue_state() == (0, 0)

        await eventually(lambda: _attached(probe), timeout_s=15)
        await probe.publish(1)

        await eventually(lambda: _entered(gate, 1))


async def test_watchdog_repairs_a_consumer_lost_without_notice(
    settings: Settings,
) -> None:
    """A consumer gone behind the worker's back is noticed and restored."""
    gate = Gate()
    gate.release.set()
    async with consuming(settings, gate) as probe:
        channel = probe.consumer._channel
        assert channel is not None
        underlay = await channel.get_underlay_channel()
        tag = probe.consumer._tag
        assert tag is not None
        await underlay.basic_cancel(tag)
        assert (await probe.queue_state())[1] == 0

        probe.consumer.recheck()
        await eventually(lambda: _attached(probe), timeout_s=15)
        await probe.publish(1)

        await eventually(lambda: _entered(gate, 1))
        assert probe.consumer._tag != tag


async def test_drain_returns_unstarted_and_finishes_in_flight(
    settings: Settings,
) -> None:
    """Shutdown: deliveries not started go back first, in flight finish."""
    settings = dataclasses.replace(settings, prefetch=2, concurrency=2)
    gate = Gate()
    async with consuming(settings, gate) as probe:
        # One slot held as a handler of a lost channel would hold it:
        # the second delivery waits for a slot, prefetched, not started.
        await probe.consumer._slots.acquire()
        await probe.publish(6)
        await eventually(lambda: _entered(gate, 1))
        await eventually(lambda: _ready(probe, 4))

        probe.stop.set()
        await eventually(lambda: _ready(probe, 5))
        assert gate.finished == []
        gate.release.set()
        probe.consumer._slots.release()
        await asyncio.wait_for(probe.task, 10)

        assert len(gate.entered) == len(gate.finished) == 1
        assert await probe.queue_state() == (5, 0)


async def test_drain_past_its_budget_gives_the_message_back(
    settings: Settings,
) -> None:
    """A handler still running at the end of the budget: redelivered."""
    settings = dataclasses.replace(settings, shutdown_budget_s=0.5)
    gate = Gate()
    async with consuming(settings, gate) as probe:
        await probe.publish(1)
        await eventually(lambda: _entered(gate, 1))
        started = time.monotonic()

        probe.stop.set()
        await asyncio.wait_for(probe.task, 10)

        assert time.monotonic() - started < 3.0
        assert gate.finished == []
        await eventually(lambda: _ready(probe, 1))


async def _no_consumer(probe: Probe) -> bool:
    return (await probe.queue_state())[1] == 0


async def _ready(probe: Probe, count: int) -> bool:
    return (await probe.queue_state())[0] == count


async def _entered(gate: Gate, count: int) -> bool:
    return len(gate.entered) >= count


async def _entered_finished(gate: Gate, count: int) -> bool:
    return len(gate.finished) >= count


async def _count(items: list[Any], count: int) -> bool:
    return len(items) >= count
