"""Fixtures every test can use: the INSi kit, and the real local servers.

Tests that touch RabbitMQ or PostgreSQL use a database and a vhost of
their own (``ins_worker_test``, ``ins-worker-test``), created here when
missing, and names unique to each test for queues and exchanges, so that
nothing a test leaves behind reaches another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from worker.settings import Settings
from worker.store import migrate

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "insi-kit"

TEST_VHOST = "ins-worker-test"
AMQP_URL = os.environ.get(
    "INS_TEST_AMQP_URL",
    f"amqp://guest:guest@127.0.0.1:5672/{TEST_VHOST}",
)
DATABASE_URL = os.environ.get(
    "INS_TEST_DATABASE_URL",
    "postgresql://postgres@127.0.0.1:5432/ins_worker_test",
)

TABLES = (
    "insi_calls",
    "request_log",
    "identity_changes",
    "identities",
    "outbox",
    "requests",
    "insi_rate_slots",
)


@pytest.fixture(scope="session")
def insi_kit() -> Path:
    """The genuine INSi contract and traffic, beside the project."""
    if not KIT.is_dir():
        pytest.skip(f"the INSi kit is not at {KIT}")
    return KIT


def _ensure_vhost() -> None:
    if TEST_VHOST not in AMQP_URL:
        return
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if TEST_VHOST in listed.stdout.split():
        return
    for command in (
        ["rabbitmqctl", "-q", "add_vhost", TEST_VHOST],
        [
            "rabbitmqctl",
            "-q",
            "set_permissions",
            "-p",
            TEST_VHOST,
            "guest",
            ".*",
            ".*",
            ".*",
        ],
    ):
        subprocess.run(command, timeout=60, check=True)


async def _fresh_database() -> None:
    await migrate.ensure_database(DATABASE_URL)
    conn = await asyncpg.connect(DATABASE_URL, timeout=10)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
    await migrate.apply(DATABASE_URL)


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    """The test vhost and a freshly migrated test database."""
    _ensure_vhost()
    asyncio.run(_fresh_database())
    return {"amqp": AMQP_URL, "database": DATABASE_URL}


@pytest.fixture
async def db(servers: dict[str, str]) -> AsyncIterator[Any]:
    """A connection to the test database, emptied before the test."""
    conn = await asyncpg.connect(servers["database"], timeout=10)
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )
    await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
    yield conn
    await conn.close()


@pytest.fixture
def settings(servers: dict[str, str]) -> Settings:
    """Worker settings on the test servers, with names unique to the test."""
    tag = uuid.uuid4().hex[:8]
    return dataclasses.replace(
        Settings(),
        environment="qualification",
        amqp_url=servers["amqp"],
        database_url=servers["database"],
        requests_exchange=f"t.{tag}.requests",
        requests_queue=f"t.{tag}.requests.v1",
        dead_letter_exchange=f"t.{tag}.dlx",
        dead_letter_queue=f"t.{tag}.dlq",
        events_exchange=f"t.{tag}.events",
        event_source=f"urn:ins-worker:test:{tag}",
        retry_delays_s=(0.5, 1.0),
        message_budget_s=10.0,
        insi_timeout_s=2.0,
        breaker_reset_s=1.0,
        outbox_poll_s=0.2,
        shutdown_budget_s=5.0,
        health_port=0,
        rate_limit_per_s=0.0,
    )
