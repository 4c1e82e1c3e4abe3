"""The global rate limit toward INSi, shared through PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from worker.ratelimit import RateLimiter
from worker.store.pool import create_pool

pytestmark = pytest.mark.servers


async def test_slots_never_grant_more_than_their_share(
    servers: dict[str, str], db: Any
) -> None:
    """Three processes' limiters together stay within each slot's share."""
    pools = [
        await create_pool(servers["database"], min_size=1, max_size=4)
        for _ in range(3)
    ]
    limiters = [RateLimiter(pool, rate_per_s=50.0) for pool in pools]
    deadline = time.monotonic() + 30

    try:
        await asyncio.gather(
            *(limiters[i % 3].acquire(deadline) for i in range(30))
        )
    finally:
        for pool in pools:
            await pool.close()

    rows = await db.fetch("SELECT slot, used FROM insi_rate_slots")
    assert sum(r["used"] for r in rows) == 30
    assert max(r["used"] for r in rows) <= 5
    assert len(rows) >= 6


async def test_wait_past_the_deadline_is_refused(
    servers: dict[str, str], db: Any
) -> None:
    """A full slot and a near deadline: TimeoutError, not a late call."""
    pool = await create_pool(servers["database"], min_size=1, max_size=2)
    limiter = RateLimiter(pool, rate_per_s=0.5)
    try:
        await limiter.acquire(time.monotonic() + 10)

        with pytest.raises(TimeoutError):
            await limiter.acquire(time.monotonic() + 0.2)
    finally:
        await pool.close()


async def test_zero_rate_means_no_limit(servers: dict[str, str]) -> None:
    """Rate 0 disables the limiter: it never touches the database."""
    limiter = RateLimiter(pool=None, rate_per_s=0.0)  # type: ignore[arg-type]

    await limiter.acquire(time.monotonic())

    assert not limiter.enabled
