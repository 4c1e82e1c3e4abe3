"""The global rate limit toward INSi, shared through PostgreSQL.

Every process of the deployment draws from the same budget: time is cut
into slots (by the database's clock, so pods need not agree on theirs)
and each slot grants at most ``rate * slot length`` calls. A process that
finds its slot full sleeps until the next one. No new server is needed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import Any

import asyncpg

from worker import metrics
from worker.errors import StoreUnavailable
from worker.store.pool import UNAVAILABLE

logger = logging.getLogger(__name__)

_TAKE = """
WITH s AS (
    SELECT floor(extract(epoch FROM clock_timestamp()) / $1)::bigint AS slot,
           extract(epoch FROM clock_timestamp()) AS now
)
INSERT INTO insi_rate_slots AS r (slot, used)
SELECT slot, 1 FROM s
ON CONFLICT (slot) DO UPDATE SET used = r.used + 1 WHERE r.used < $2
RETURNING slot
"""

_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"


class RateLimiter:
    """Grants permission for one INSi call at a time, deployment-wide."""

    def __init__(self, pool: asyncpg.Pool[Any], rate_per_s: float) -> None:
        self._pool = pool
        self._rate = rate_per_s
        # Slots of at least 100 ms, long enough to hold one whole call.
        self._slot_s = max(0.1, 1.0 / rate_per_s) if rate_per_s > 0 else 0
        self._per_slot = (
            max(1, round(rate_per_s * self._slot_s)) if rate_per_s > 0 else 0
        )
        self._taken = 0
        # One task of this process polls the slot table at a time; the
        # others queue here instead of each polling the database.
        self._turn = asyncio.Lock()
        self._cleaning: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        """False when no limit is configured."""
        return self._rate > 0

    async def acquire(self, deadline: float) -> None:
        """Wait for a slot; ``deadline`` is a ``time.monotonic()`` value."""
        if not self.enabled:
            return
        started = time.monotonic()
        async with asyncio.timeout(max(0.0, deadline - started)):
            await self._turn.acquire()
        try:
            await self._take_turn(started, deadline)
        finally:
            self._turn.release()

    async def _take_turn(self, started: float, deadline: float) -> None:
        while True:
            wait = await self._try()
            if wait is None:
                metrics.rate_limit_wait.observe(time.monotonic() - started)
                self._maybe_clean()
                return
            if time.monotonic() + wait > deadline:
                raise TimeoutError("rate limit wait exceeds the deadline")
            # A little jitter so that waiting processes do not stampede
            # the next slot's row at the same instant.
            await asyncio.sleep(wait + random.uniform(0, self._slot_s / 10))

    async def _try(self) -> float | None:
        try:
            async with self._pool.acquire(timeout=5.0) as conn:
                granted = await conn.fetchval(
                    _TAKE, self._slot_s, self._per_slot
                )
                if granted is not None:
                    return None
                now = await conn.fetchval(_NOW)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"rate limit not reachable ({type(exc).__name__})"
            ) from exc
        return self._slot_s - math.fmod(now, self._slot_s)

    def _maybe_clean(self) -> None:
        self._taken += 1
        if self._taken % 500 == 0:
            task = asyncio.get_running_loop().create_task(self._clean())
            self._cleaning.add(task)
            task.add_done_callback(self._cleaning.discard)

    async def _clean(self) -> None:
        try:
            async with self._pool.acquire(timeout=5.0) as conn:
                await conn.execute(
                    "DELETE FROM insi_rate_slots WHERE slot < floor("
                    "extract(epoch FROM clock_timestamp()) / $1)::bigint - 50",
                    self._slot_s,
                )
        except UNAVAILABLE:
            logger.info("rate_limit_clean_skipped")
