"""The run's own vhost, queues and database: made, checked, removed."""

from __future__ import annotations

import contextlib

import aio_pika
import asyncpg

from worker import topology
from worker.settings import Settings

from . import servers

VHOST = "ins-worker-faults"
AMQP_ROOT = "amqp://guest:guest@127.0.0.1:5672/"
PG_ROOT = "postgresql://postgres@127.0.0.1:5432/"


async def ensure_vhost() -> None:
    """The run's vhost, with the guest user's permissions."""
    _, out = await servers.run("rabbitmqctl", "-q", "list_vhosts")
    if VHOST in out.split():
        return
    await servers.run("rabbitmqctl", "-q", "add_vhost", VHOST)
    await servers.run(
        "rabbitmqctl",
        "-q",
        "set_permissions",
        "-p",
        VHOST,
        "guest",
        ".*",
        ".*",
        ".*",
    )


async def declare(settings: Settings, audit: str) -> None:
    """The worker's topology, and the audit queue bound to the events."""
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        await topology.declare(channel, settings)
        events = await channel.get_exchange(settings.events_exchange)
        queue = await channel.declare_queue(
            audit, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(events, routing_key="#")
    finally:
        await connection.close()


_NOT_YET = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    aio_pika.exceptions.AMQPError,
)


async def quiet(
    settings: Settings,
    db_url: str,
    expected: list[str],
    dead_letters: int,
) -> bool:
    """Whether every outcome is stored, sent, and the queues are empty."""
    try:
        db = await asyncpg.connect(db_url, timeout=5)
        try:
            done = await db.fetchval(
                "SELECT count(*) FROM requests WHERE state = 'done'"
                " AND request_id = ANY($1::uuid[])",
                expected,
            )
            unsent = await db.fetchval(
                "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
            )
        finally:
            await db.close()
        if done < len(expected) or unsent:
            return False
        connection = await aio_pika.connect(settings.amqp_url, timeout=5)
        try:
            channel = await connection.channel()
            names = [settings.requests_queue]
            names += [t.queue for t in topology.retry_tiers(settings)]
            for name in names:
                queue = await channel.declare_queue(name, passive=True)
                if queue.declaration_result.message_count:
                    return False
            dlq = await channel.declare_queue(
                settings.dead_letter_queue, passive=True
            )
            return (dlq.declaration_result.message_count or 0) >= dead_letters
        finally:
            await connection.close()
    except _NOT_YET:
        return False


async def cleanup(settings: Settings, audit: str, database: str) -> None:
    """Remove the queues, exchanges and database of a passed run."""
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(settings.amqp_url, timeout=10)
        channel = await connection.channel()
        names = [settings.requests_queue, settings.dead_letter_queue, audit]
        names += [t.queue for t in topology.retry_tiers(settings)]
        for name in names:
            await channel.queue_delete(name)
        for exchange in (
            settings.requests_exchange,
            settings.dead_letter_exchange,
            settings.events_exchange,
        ):
            await channel.exchange_delete(exchange)
        await connection.close()
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(PG_ROOT + "postgres", timeout=10)
        await conn.execute(
            f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
        )
        await conn.close()
