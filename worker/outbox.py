"""The outbox relay: publishes stored events, marks them sent on confirm.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` so that any number of
relays (one per worker process) share the work without sending a row
twice at the same time. A row is marked sent only once the broker has
confirmed it; a crash in between sends it again (at least once, same
event id). ``LISTEN/NOTIFY`` and in-process wake-ups make it quick; a poll
makes it certain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import asyncpg

from worker import metrics
from worker.broker import Outgoing, Publisher
from worker.errors import BrokerUnavailable, StoreUnavailable, Unroutable
from worker.events import CONTENT_TYPE
from worker.store.pool import UNAVAILABLE

logger = logging.getLogger(__name__)

CHANNEL = "ins_worker_outbox"

_CLAIM = """
SELECT id, event_id, event_type, routing_key, body
  FROM outbox
 WHERE sent_at IS NULL
 ORDER BY id
 LIMIT $1
 FOR UPDATE SKIP LOCKED
"""

_BACKLOG = """
SELECT count(*) AS backlog,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
           AS oldest
  FROM outbox WHERE sent_at IS NULL
"""


class OutboxRelay:
    """Moves events from the ``outbox`` table to the events exchange."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        publisher: Publisher,
        *,
        exchange: str,
        database_url: str,
        batch: int = 256,
        poll_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._exchange = exchange
        self._url = database_url
        self._batch = batch
        self._poll_s = poll_s
        self._max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection[Any] | None = None
        self.healthy = True

    def wake(self) -> None:
        """Ask for a pass soon (after a commit in this process)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set."""
        failures = 0
        while not stop.is_set():
            try:
                await self._listen()
                while await self.relay_once() == self._batch:
                    pass
                failures = 0
                self.healthy = True
                await self._refresh_metrics()
            except Exception as exc:
                if not isinstance(exc, BrokerUnavailable | StoreUnavailable):
                    # Unknown, so logged in full; but the relay is the only
                    # way out for stored events: it must never stop.
                    logger.exception("outbox_relay_crashed")
                failures += 1
                self.healthy = False
                pause = self._backoff(failures)
                logger.warning(
                    "outbox_relay_failed kind=%s attempt=%d retry_in_s=%.1f",
                    type(exc).__name__,
                    failures,
                    pause,
                )
                # The backlog gauges matter most while the relay fails.
                await self._refresh_metrics()
                await _sleep_or(stop, pause)
                continue
            await self._wait(stop)
        await self._unlisten()

    async def relay_once(self) -> int:
        """Claim, publish and mark one batch; return the rows claimed."""
        try:
            async with (
                self._pool.acquire(timeout=5.0) as conn,
                conn.transaction(),
            ):
                rows = await conn.fetch(_CLAIM, self._batch)
                if not rows:
                    return 0
                sent = await self._publish(rows)
                if sent:
                    await conn.execute(
                        "UPDATE outbox SET sent_at = now()"
                        " WHERE id = ANY($1::bigint[])",
                        [row["id"] for row in sent],
                    )
        except UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"outbox not reachable ({type(exc).__name__})"
            ) from exc
        for row in sent:
            metrics.events_published.labels(type=row["event_type"]).inc()
        if len(sent) < len(rows):
            raise BrokerUnavailable(
                f"{len(rows) - len(sent)} event(s) not confirmed"
            )
        return len(rows)

    async def flush(self, timeout_s: float) -> bool:
        """Relay until nothing is pending or the time is up (shutdown)."""
        try:
            async with asyncio.timeout(timeout_s):
                while await self.relay_once():
                    pass
        except (TimeoutError, BrokerUnavailable, StoreUnavailable) as exc:
            logger.warning(
                "outbox_flush_incomplete kind=%s", type(exc).__name__
            )
            return False
        return True

    async def _publish(self, rows: list[asyncpg.Record]) -> list[Any]:
        messages = [
            Outgoing(
                exchange=self._exchange,
                routing_key=row["routing_key"],
                body=bytes(row["body"]),
                message_id=str(row["event_id"]),
                content_type=CONTENT_TYPE,
            )
            for row in rows
        ]
        results = await self._publisher.publish_many(messages)
        sent = []
        for row, error in zip(rows, results, strict=True):
            if error is None:
                sent.append(row)
            elif isinstance(error, Unroutable):
                logger.error(
                    "event_unroutable event_id=%s type=%s",
                    row["event_id"],
                    row["event_type"],
                )
            else:
                logger.warning(
                    "event_not_confirmed event_id=%s kind=%s",
                    row["event_id"],
                    type(error).__name__,
                )
        return sent

    async def _refresh_metrics(self) -> None:
        try:
            async with self._pool.acquire(timeout=2.0) as conn:
                row = await conn.fetchrow(_BACKLOG, timeout=2.0)
        except UNAVAILABLE:
            return
        if row is not None:
            metrics.outbox_backlog.set(row["backlog"])
            metrics.outbox_oldest_age.set(row["oldest"])

    async def _wait(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(stop.wait()),
        ]
        try:
            await asyncio.wait(
                waiters,
                timeout=self._poll_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _listen(self) -> None:
        # The NOTIFY wake-up is a hint: if this fails, polling carries on.
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            async with asyncio.timeout(10.0):
                self._listener = await asyncpg.connect(
                    self._url, timeout=5.0
                )
                await self._listener.add_listener(CHANNEL, self._notified)
        except UNAVAILABLE:
            await self._unlisten()

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            with contextlib.suppress(*UNAVAILABLE):
                await asyncio.wait_for(listener.close(), 5.0)

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._max_backoff_s, 0.5 * 2 ** min(failures, 8))
        return random.uniform(ceiling / 2, ceiling)


async def _sleep_or(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
