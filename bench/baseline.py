"""The bare pipeline the worker is measured against (its own process).

Consume with manual ack, one HTTP POST of a canned SOAP request, read
the reply with lxml, one INSERT, publish one event with a confirm, ack.
No inbox, no outbox, no retries, no checks: the least work the same
servers allow for the same job. Run as ``python -m bench.baseline``; it
prints ``ready`` once consuming and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from lxml import etree

from bench.workload import CannedCall, canned_call

logger = logging.getLogger(__name__)

TABLE = "bench_baseline"

CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    request_id  uuid PRIMARY KEY,
    cr_code     text,
    ins         text,
    http_ms     double precision NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
)
"""

_INSERT = (
    f"INSERT INTO {TABLE} (request_id, cr_code, ins, http_ms)"
    " VALUES ($1, $2, $3, $4)"
)

_RESULTAT = "{http://www.cnamts.fr/INSiResultat}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def read_reply(body: bytes) -> tuple[str | None, str | None]:
    """(CodeCR, active INS) of a reply, read with lxml."""
    root = etree.fromstring(body, _PARSER)
    code = root.findtext(f".//{_RESULTAT}CodeCR")
    ins = root.findtext(
        f".//{_RESULTAT}INSACTIF/{_RESULTAT}IdIndividu"
        f"/{_RESULTAT}NumIdentifiant"
    )
    return code, ins


class BarePipeline:
    """One delivery after another, as many at once as the prefetch."""

    def __init__(
        self,
        call: CannedCall,
        session: aiohttp.ClientSession,
        pool: asyncpg.Pool[Any],
        events: AbstractExchange,
        insi_url: str,
    ) -> None:
        self._call = call
        self._session = session
        self._pool = pool
        self._events = events
        self._url = insi_url
        self._tasks: set[asyncio.Task[None]] = set()
        self._headers = {"Content-Type": call.content_type}

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """Start handling a delivery; the prefetch bounds how many."""
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        request_id = json.loads(message.body)["id"]

        started = time.perf_counter()
        async with self._session.post(
            self._url, data=self._call.body, headers=self._headers
        ) as response:
            reply = await response.read()
        http_ms = (time.perf_counter() - started) * 1000.0

        code, ins = read_reply(reply)
        await self._pool.execute(_INSERT, request_id, code, ins, http_ms)

        event = {"data": {"request_id": request_id, "cr": code, "ins": ins}}
        await self._events.publish(
            aio_pika.Message(
                json.dumps(event).encode(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="identity.qualified",
        )
        await message.ack()

    async def drain(self) -> None:
        """Let the deliveries being handled finish."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10.0)


async def serve(args: argparse.Namespace) -> None:
    """Consume until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
        args.database_url,
        min_size=2,
        max_size=max(4, args.prefetch // 2 + 2),
    )
    await pool.execute(CREATE_TABLE)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=args.prefetch)
    )
    consuming = await aio_pika.connect(args.amqp_url)
    publishing = await aio_pika.connect(args.amqp_url)
    try:
        channel = await consuming.channel()
        await channel.set_qos(prefetch_count=args.prefetch)
        queue = await channel.get_queue(args.queue)
        confirmed = await publishing.channel(publisher_confirms=True)
        events = await confirmed.get_exchange(args.events_exchange)
        pipeline = BarePipeline(
            canned_call(), session, pool, events, args.insi_url
        )
        tag = await queue.consume(pipeline.on_message)
        print("ready", flush=True)

        await stop.wait()
        await queue.cancel(tag)
        await pipeline.drain()
    finally:
        await consuming.close()
        await publishing.close()
        await session.close()
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--events-exchange", required=True)
    parser.add_argument("--insi-url", required=True)
    parser.add_argument("--prefetch", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
