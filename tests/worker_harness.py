"""A running worker on the real servers, with the simulator, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import jsonschema

from worker import topology
from worker.app import serve
from worker.settings import Settings
from worker.simulator.server import Simulator

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
EVENT_SCHEMA = json.loads(
    (SCHEMAS / "events" / "identity-event.v1.schema.json").read_text()
)
EVENT_VALIDATOR = jsonschema.Draft202012Validator(
    EVENT_SCHEMA, format_checker=jsonschema.FormatChecker()
)


def request_body(
    traits: dict[str, Any],
    *,
    request_id: str | None = None,
    document: dict[str, str] | None = None,
    ins: dict[str, str] | None = None,
    attributes: list[str] | None = None,
    patient: str = "ipp/000123",
    source: str = "urn:example:pas:test",
) -> tuple[str, bytes]:
    """(request id, body) of one verification request."""
    request_id = request_id or str(uuid.uuid4())
    data: dict[str, Any] = {"traits": traits}
    if document is not None:
        data["document"] = document
    if ins is not None:
        data["ins"] = ins
    if attributes is not None:
        data["attributes"] = attributes
    body = {
        "specversion": "1.0",
        "type": "fr.ins.identity.verification.requested.v1",
        "source": source,
        "id": request_id,
        "subject": patient,
        "correlationid": f"corr-{request_id[:8]}",
        "data": data,
    }
    return request_id, json.dumps(body).encode()


def traits(
    name: str, first: list[str], sex: str, born: str, place: str | None = None
) -> dict[str, Any]:
    """Desk traits."""
    out: dict[str, Any] = {
        "birth_name": name,
        "first_names": first,
        "sex": sex,
        "birth_date": born,
    }
    if place is not None:
        out["birth_place"] = place
    return out


CN = {"type": "CN", "checked_at": "2026-12-01"}


@dataclasses.dataclass
class RunningWorker:
    """Handles on a worker under test."""

    settings: Settings
    simulator: Simulator
    channel: aio_pika.abc.AbstractChannel
    events: aio_pika.abc.AbstractQueue
    dead: aio_pika.abc.AbstractQueue
    db: asyncpg.Connection[Any]
    stop: asyncio.Event
    task: asyncio.Task[int]

    async def publish(
        self,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish a request the way a requesting service would."""
        exchange = await self.channel.get_exchange(
            self.settings.requests_exchange
        )
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                headers=headers or {},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self.settings.requests_routing_key,
        )

    async def outcome(
        self, request_id: str, timeout_s: float = 15.0
    ) -> asyncpg.Record:
        """The stored outcome row, waiting for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = await self.db.fetchrow(
                "SELECT * FROM requests WHERE request_id = $1"
                " AND state = 'done'",
                request_id,
            )
            if row is not None:
                return row
            await asyncio.sleep(0.05)
        raise AssertionError(f"no outcome for {request_id}")

    async def take_events(
        self, count: int, timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        """The next ``count`` events, each validated against the schema."""
        return [
            json.loads(m.body)
            for m in await _take(self.events, count, timeout_s)
        ]

    async def take_dead_letters(
        self, count: int, timeout_s: float = 10.0
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """The next ``count`` dead letters."""
        return await _take(self.dead, count, timeout_s)

    async def stop_worker(self) -> int:
        """Stop the worker (SIGTERM path) and return its exit status."""
        self.stop.set()
        return await asyncio.wait_for(self.task, 30)

    async def ready_messages(self) -> int:
        """Messages waiting in the requests queue."""
        queue = await self.channel.declare_queue(
            self.settings.requests_queue, passive=True
        )
        return int(queue.declaration_result.message_count or 0)


async def _take(
    queue: aio_pika.abc.AbstractQueue, count: int, timeout_s: float
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    deadline = time.monotonic() + timeout_s
    taken: list[aio_pika.abc.AbstractIncomingMessage] = []
    while len(taken) < count and time.monotonic() < deadline:
        message = await queue.get(fail=False, timeout=5)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        taken.append(message)
    if len(taken) < count:
        raise AssertionError(f"expected {count} messages, got {len(taken)}")
    return taken


def validate_event(event: dict[str, Any]) -> None:
    """Raise unless ``event`` matches the published event schema."""
    EVENT_VALIDATOR.validate(event)


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings,
    db: asyncpg.Connection[Any],
    simulator: Simulator | None = None,
) -> AsyncIterator[RunningWorker]:
    """Start simulator and worker; stop both at the end."""
    simulator = simulator or Simulator()
    url = await simulator.start("127.0.0.1", 0)
    settings = dataclasses.replace(settings, insi_url=url)
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    channel = await connection.channel()
    await topology.declare(channel, settings)
    events = await _listen(channel, settings.events_exchange, "identity.#")
    dead = await _listen(channel, settings.dead_letter_exchange, "#")

    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(settings, stop, install_signals=False, ready=ready)
    )
    await asyncio.wait_for(ready.wait(), 15)
    try:
        yield RunningWorker(
            settings, simulator, channel, events, dead, db, stop, task
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        await delete_topology(channel, settings)
        await connection.close()
        await simulator.stop()


async def _listen(
    channel: aio_pika.abc.AbstractChannel, exchange: str, key: str
) -> aio_pika.abc.AbstractQueue:
    found = await channel.get_exchange(exchange)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(found, routing_key=key)
    return queue


async def delete_topology(
    channel: aio_pika.abc.AbstractChannel, settings: Settings
) -> None:
    """Remove the test's queues and exchanges (names unique per test)."""
    names = [settings.requests_queue, settings.dead_letter_queue]
    names += [tier.queue for tier in topology.retry_tiers(settings)]
    for name in names:
        with contextlib.suppress(Exception):
            await channel.queue_delete(name)
    for exchange in (
        settings.requests_exchange,
        settings.dead_letter_exchange,
        settings.events_exchange,
    ):
        with contextlib.suppress(Exception):
            await channel.exchange_delete(exchange)
