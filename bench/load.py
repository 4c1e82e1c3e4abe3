"""Publishing requests and collecting events, with a timestamp for each.

The harness publishes the way a requesting service would (persistent,
publisher confirms, a window of confirms outstanding) and listens on an
exclusive queue bound to every event. One clock (``perf_counter`` in
this process) times both ends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from bench.workload import Request

#: confirms outstanding while publishing a burst
WINDOW = 256


class EventCollector:
    """Receives every event and notes when each request's first came."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.events = 0
        self._expected = 0
        self._done = asyncio.Event()
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None

    async def attach(self, channel: AbstractChannel, exchange: str) -> None:
        """Bind an exclusive queue to every event of ``exchange``."""
        found = await channel.get_exchange(exchange)
        self._queue = await channel.declare_queue(
            exclusive=True, auto_delete=True
        )
        await self._queue.bind(found, routing_key="#")
        self._tag = await self._queue.consume(self._on_event, no_ack=True)

    def expect(self, count: int) -> None:
        """Forget what came so far; wait for ``count`` distinct requests."""
        self.received = {}
        self.events = 0
        self._expected = count
        self._done.clear()
        if count == 0:
            self._done.set()

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        self.events += 1
        request_id = json.loads(message.body)["data"]["request_id"]
        self.received.setdefault(request_id, now)
        if len(self.received) >= self._expected:
            self._done.set()

    async def wait(
        self, timeout_s: float, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        """Whether every expected request's event came in time.

        Gives up early once ``alive()`` says the connections are gone.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and alive():
            try:
                await asyncio.wait_for(self._done.wait(), 0.5)
            except TimeoutError:
                continue
            return True
        return self._done.is_set()

    @property
    def duplicates(self) -> int:
        """Events beyond the first for a request (at-least-once)."""
        return self.events - len(self.received)


async def _publish(
    exchange: AbstractExchange,
    routing_key: str,
    request: Request,
    sent: dict[str, float],
) -> None:
    sent[request.request_id] = time.perf_counter()
    await exchange.publish(
        aio_pika.Message(
            request.body,
            message_id=request.request_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=routing_key,
    )


async def publish_burst(
    exchange: AbstractExchange,
    routing_key: str,
    requests: Sequence[Request],
) -> dict[str, float]:
    """Publish everything as fast as confirms allow; send times by id."""
    sent: dict[str, float] = {}
    for start in range(0, len(requests), WINDOW):
        window = requests[start : start + WINDOW]
        await asyncio.gather(
            *(_publish(exchange, routing_key, r, sent) for r in window)
        )
    return sent


async def publish_paced(
    exchange: AbstractExchange,
    routing_key: str,
    requests: Sequence[Request],
    rate_per_s: float,
) -> dict[str, float]:
    """Publish at ``rate_per_s`` evenly; send times by id."""
    sent: dict[str, float] = {}
    pending: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    index = 0
    while index < len(requests):
        due = min(
            len(requests),
            int((time.perf_counter() - started) * rate_per_s) + 1,
        )
        while index < due:
            task = asyncio.create_task(
                _publish(exchange, routing_key, requests[index], sent)
            )
            pending.add(task)
            task.add_done_callback(pending.discard)
            index += 1
        await asyncio.sleep(0.005)
    if pending:
        await asyncio.gather(*pending)
    return sent
