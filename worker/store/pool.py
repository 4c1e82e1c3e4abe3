"""The asyncpg pool: timeouts on everything, dead connections replaced."""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg

from worker.errors import StoreUnavailable

logger = logging.getLogger(__name__)

#: errors that mean "the database is not there right now", not a bug
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.QueryCanceledError,
    # A session killed while idle (pg_terminate_backend, a restart) can
    # leave its protocol mid-state: the next use fails this way, and the
    # pool replaces the connection once it is seen closed.
    asyncpg.exceptions.InternalClientError,
)


async def _init(conn: asyncpg.Connection[Any]) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: json.dumps(v, separators=(",", ":")),
        decoder=json.loads,
        schema="pg_catalog",
    )


async def _no_reset(conn: asyncpg.Connection[Any]) -> None:
    # The worker never changes session state (no SET, no LISTEN on pooled
    # connections, no temp tables), so the RESET ALL round trip on every
    # release is pure cost.
    return None


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 16,
    statement_timeout_s: float = 10.0,
    connect_timeout_s: float = 5.0,
) -> asyncpg.Pool[Any]:
    """A pool whose every statement is bounded by a server-side timeout."""
    try:
        pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout_s,
            command_timeout=statement_timeout_s + 1.0,
            max_inactive_connection_lifetime=60.0,
            init=_init,
            reset=_no_reset,
            server_settings={
                "application_name": "ins-worker",
                "statement_timeout": str(int(statement_timeout_s * 1000)),
                "idle_in_transaction_session_timeout": str(
                    int(statement_timeout_s * 3000)
                ),
            },
        )
    except UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"cannot reach PostgreSQL ({type(exc).__name__})"
        ) from exc
    return pool


async def ping(pool: asyncpg.Pool[Any], timeout_s: float = 2.0) -> bool:
    """Whether the database answers a trivial query within the timeout."""
    try:
        async with pool.acquire(timeout=timeout_s) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
    except UNAVAILABLE:
        return False
    return True
