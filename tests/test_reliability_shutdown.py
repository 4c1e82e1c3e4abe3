"""SIGTERM on a real ``ins-worker run`` process: the order of the stop.

Stop taking deliveries, give back those not started, finish those in
flight, flush the outbox, exit 0; a second SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from worker_harness import CN, request_body, traits

from worker import topology
from worker.settings import Settings
from worker.simulator.faults import FaultConfig
from worker.simulator.server import Simulator

pytestmark = pytest.mark.servers

ADRTROIS = traits("Adrtrois", ["Toussaint"], "M", "1960-01-01")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``INS_WORKER_*`` variables of a process."""
    env = {k: v for k, v in os.environ.items() if "INS_WORKER_" not in k}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        env[f"INS_WORKER_{field.name.upper()}"] = text
    return env


@dataclasses.dataclass
class Stack:
    """A worker process, its simulator and a channel on its queues."""

    settings: Settings
    simulator: Simulator
    channel: aio_pika.abc.AbstractChannel
    process: asyncio.subprocess.Process

    async def publish(self, count: int) -> list[str]:
        """``count`` requests about distinct patients; their ids."""
        exchange = await self.channel.get_exchange(
            self.settings.requests_exchange
        )
        ids = []
        for i in range(count):
            request_id, body = request_body(
                ADRTROIS, document=CN, patient=f"ipp/{i}"
            )
            await exchange.publish(
                aio_pika.Message(body, message_id=request_id),
                routing_key=self.settings.requests_routing_key,
            )
            ids.append(request_id)
        return ids

    async def ready(self) -> int:
        """Messages ready in the requests queue."""
        queue = await self.channel.declare_queue(
            self.settings.requests_queue, passive=True
        )
        return int(queue.declaration_result.message_count or 0)

    async def calls_reach(self, count: int) -> None:
        """Wait until the simulator has received ``count`` calls."""
        deadline = time.monotonic() + 20
        while self.simulator.stats.total < count:
            assert time.monotonic() < deadline, "INSi was never called"
            await asyncio.sleep(0.05)


@pytest.fixture
async def stack(
    settings: Settings, db: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """A worker process with slow INSi answers (the test's latency)."""
    latency_ms, overrides = request.param
    simulator = Simulator(faults=FaultConfig(latency_ms=latency_ms))
    url = await simulator.start("127.0.0.1", 0)
    settings = dataclasses.replace(
        settings, insi_url=url, health_port=free_port(), **overrides
    )
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    channel = await connection.channel()
    await topology.declare(channel, settings)
    events = await channel.declare_queue(exclusive=True)
    await events.bind(settings.events_exchange, routing_key="#")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "run",
        env=environment(settings),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield Stack(settings, simulator, channel, process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for name in (settings.requests_queue, settings.dead_letter_queue):
            await channel.queue_delete(name)
        for tier in topology.retry_tiers(settings):
            await channel.queue_delete(tier.queue)
        await connection.close()
        await simulator.stop()


@pytest.mark.parametrize(
    "stack", [(1500, {"prefetch": 6, "concurrency": 2})], indirect=True
)
async def test_sigterm_finishes_in_flight_flushes_and_exits_zero(
    stack: Stack, db: Any
) -> None:
    """2 in flight finish with outcome and event; 3 stay in the queue."""
    ids = await stack.publish(5)
    await stack.calls_reach(2)

    stack.process.send_signal(signal.SIGTERM)
    status = await asyncio.wait_for(stack.process.wait(), 30)

    assert status == 0
    done = await db.fetchval(
        "SELECT count(*) FROM requests WHERE state = 'done'"
        " AND request_id = ANY($1::uuid[])",
        ids,
    )
    unsent = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
    )
    assert done == 2
    assert unsent == 0
    assert await stack.ready() == 3
    assert stack.simulator.stats.total == 2


@pytest.mark.parametrize(
    "stack",
    [(20_000, {"insi_timeout_s": 30.0, "shutdown_budget_s": 15.0})],
    indirect=True,
)
async def test_second_sigterm_exits_at_once(stack: Stack, db: Any) -> None:
    """During the drain, another SIGTERM ends the process right away."""
    await stack.publish(1)
    await stack.calls_reach(1)
    stack.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(1.0)
    assert stack.process.returncode is None

    started = time.monotonic()
    stack.process.send_signal(signal.SIGTERM)
    status = await asyncio.wait_for(stack.process.wait(), 5)

    assert time.monotonic() - started < 2.0
    assert status != 0
    deadline = time.monotonic() + 10
    while await stack.ready() != 1:
        assert time.monotonic() < deadline, "the message did not come back"
        await asyncio.sleep(0.1)
