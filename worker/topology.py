"""The exchanges and queues the worker declares, idempotently, at start.

::

    identity.requests (topic) ──► identity.requests.v1 (quorum)
                                     │ rejected / delivery limit
                                     ▼
    identity.requests.dlx (fanout) ──► identity.requests.dlq (quorum)

    identity.requests.v1 ◄── dead-lettered after their TTL ── retry.<tier>

    identity.events (topic) ──► whatever consumers bind

Quorum queues dead-letter *at least once* (with ``reject-publish``
overflow), so nothing is dropped on the way to the dead-letter queue or
back from a retry queue.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue
from aiormq.abc import FieldTable

from worker.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryTier:
    """One delayed-retry queue: messages wait ``delay_s`` then go back."""

    index: int
    delay_s: float
    queue: str


def retry_tiers(settings: Settings) -> list[RetryTier]:
    """The retry queues, one per configured delay."""
    return [
        RetryTier(i, d, f"{settings.requests_queue}.retry.{i + 1}")
        for i, d in enumerate(settings.retry_delays_s)
    ]


def _quorum(extra: FieldTable) -> FieldTable:
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        **extra,
    }


async def declare(
    channel: AbstractChannel, settings: Settings
) -> AbstractQueue:
    """Declare everything; return the requests queue."""
    requests = await channel.declare_exchange(
        settings.requests_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dlx = await channel.declare_exchange(
        settings.dead_letter_exchange,
        aio_pika.ExchangeType.FANOUT,
        durable=True,
    )
    await channel.declare_exchange(
        settings.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )

    dlq = await channel.declare_queue(
        settings.dead_letter_queue,
        durable=True,
        arguments={"x-queue-type": "quorum"},
    )
    await dlq.bind(dlx, routing_key="#")

    queue = await channel.declare_queue(
        settings.requests_queue,
        durable=True,
        arguments=_quorum(
            {
                "x-dead-letter-exchange": settings.dead_letter_exchange,
                "x-delivery-limit": settings.delivery_limit,
            }
        ),
    )
    await queue.bind(requests, routing_key=settings.requests_routing_key)

    for tier in retry_tiers(settings):
        await channel.declare_queue(
            tier.queue,
            durable=True,
            arguments=_quorum(
                {
                    "x-message-ttl": int(tier.delay_s * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": settings.requests_queue,
                }
            ),
        )
    return queue
