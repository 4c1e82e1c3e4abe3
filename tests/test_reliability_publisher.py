"""The publisher on the real broker: confirmed, or an error, never silent."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import AsyncIterator

import aio_pika
import pytest

from worker import topology
from worker.broker import Outgoing, Publisher
from worker.errors import BrokerUnavailable, Unroutable
from worker.settings import Settings

pytestmark = pytest.mark.servers


@pytest.fixture
async def declared(settings: Settings) -> AsyncIterator[Settings]:
    """The test's topology on the broker, removed afterwards."""
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    channel = await connection.channel()
    await topology.declare(channel, settings)
    yield settings
    for name in (settings.requests_queue, settings.dead_letter_queue):
        await channel.queue_delete(name)
    for tier in topology.retry_tiers(settings):
        await channel.queue_delete(tier.queue)
    for exchange in (
        settings.requests_exchange,
        settings.dead_letter_exchange,
        settings.events_exchange,
    ):
        await channel.exchange_delete(exchange)
    await connection.close()


def dead_letter(settings: Settings) -> Outgoing:
    """A message for the dead-letter exchange (bound: routable)."""
    return Outgoing(settings.dead_letter_exchange, "x", b"body")


async def test_unroutable_publish_raises_instead_of_passing(
    declared: Settings,
) -> None:
    """No queue bound for the key: the caller hears about it."""
    publisher = Publisher(declared)
    try:
        with pytest.raises(Unroutable):
            await publisher.publish(
                Outgoing(declared.events_exchange, "identity.none", b"{}")
            )
    finally:
        await publisher.close()


async def test_publish_to_a_missing_exchange_raises_broker_unavailable(
    declared: Settings,
) -> None:
    """The broker closes the channel: an error, then a fresh channel."""
    publisher = Publisher(declared)
    try:
        with pytest.raises(BrokerUnavailable):
            await publisher.publish(Outgoing("no.such.exchange", "k", b"x"))

        await publisher.publish(dead_letter(declared))
    finally:
        await publisher.close()


async def test_publisher_reconnects_after_the_broker_closed_it(
    declared: Settings,
) -> None:
    """``rabbitmqctl close_connection``: the next publish reconnects."""
    publisher = Publisher(dataclasses.replace(declared))
    try:
        await publisher.publish(dead_letter(declared))
        closed = await asyncio.to_thread(_close_publishing_connections)
        await asyncio.sleep(0.5)
        assert closed == 1
        assert not publisher.connected

        await publisher.publish(dead_letter(declared))

        assert publisher.connected
    finally:
        await publisher.close()


async def test_unreachable_broker_fails_the_publish_within_its_timeout(
    declared: Settings,
) -> None:
    """Nothing listening: BrokerUnavailable, promptly, for every message."""
    unreachable = dataclasses.replace(
        declared, amqp_url="amqp://guest:guest@127.0.0.1:1/"
    )
    publisher = Publisher(unreachable, timeout_s=2.0)

    with pytest.raises(BrokerUnavailable):
        await asyncio.wait_for(
            publisher.publish_many([dead_letter(declared)] * 50), 5.0
        )


def _close_publishing_connections() -> int:
    import os

    listed = subprocess.run(
        [
            "rabbitmqctl",
            "-q",
            "--no-table-headers",
            "list_connections",
            "pid",
            "client_properties",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    mine = "ins-worker publish "
    closed = 0
    for line in listed.stdout.splitlines():
        pid, _, properties = line.partition("\t")
        if mine in properties and f"/{os.getpid()}\"" in properties:
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", pid, "test"],
                timeout=60,
                check=True,
            )
            closed += 1
    return closed
