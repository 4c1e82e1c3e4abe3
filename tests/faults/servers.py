"""Faults on the local RabbitMQ and PostgreSQL, and getting them back.

Everything here targets this machine's own test servers only, and only
the run's sessions where a fault is meant to be selective: connections
are chosen by the worker pids of the run, backends by the run's database.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import asyncpg

logger = logging.getLogger(__name__)

_NAME = re.compile(r'"connection_name","(ins-worker [^"]*)"')


async def run(*command: str, timeout_s: float = 120.0) -> tuple[int, str]:
    """Run a command; (exit status, output)."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, "timed out"
    return int(process.returncode or 0), out.decode(errors="replace")


async def worker_connections(pids: set[int]) -> list[tuple[str, str]]:
    """(broker pid, connection name) of the connections of ``pids``."""
    status, out = await run(
        "rabbitmqctl",
        "-q",
        "--no-table-headers",
        "list_connections",
        "pid",
        "client_properties",
        timeout_s=60,
    )
    if status != 0:
        return []
    found = []
    for line in out.splitlines():
        broker_pid, _, properties = line.partition("\t")
        match = _NAME.search(properties)
        if match is None:
            continue
        name = match.group(1)
        owner = name.rsplit("/", 1)[-1]
        if owner.isdigit() and int(owner) in pids:
            found.append((broker_pid, name))
    return found


async def close_connection(broker_pid: str) -> bool:
    """``rabbitmqctl close_connection``: the broker drops it."""
    status, _ = await run(
        "rabbitmqctl",
        "-q",
        "close_connection",
        broker_pid,
        "fault schedule",
        timeout_s=60,
    )
    return status == 0


async def restart_rabbitmq() -> float:
    """Stop and start the RabbitMQ application; seconds it was down."""
    started = time.monotonic()
    await run("rabbitmqctl", "-q", "stop_app")
    await run("rabbitmqctl", "-q", "start_app")
    await ensure_rabbitmq()
    return time.monotonic() - started


async def ensure_rabbitmq() -> None:
    """Make sure RabbitMQ runs and accepts connections."""
    status, _ = await run(
        "rabbitmqctl", "-q", "await_startup", "--timeout", "60"
    )
    if status == 0:
        return
    await run("rabbitmqctl", "-q", "start_app")
    status, _ = await run(
        "rabbitmqctl", "-q", "await_startup", "--timeout", "60"
    )
    if status != 0:
        await run("rabbitmq-server", "-detached")
        await run("rabbitmqctl", "-q", "await_startup", "--timeout", "120")


def _pg_version() -> str:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    return versions[-1] if versions else "15"


async def restart_postgres() -> float:
    """Restart the local cluster; seconds until it accepts again."""
    started = time.monotonic()
    await run(
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        _pg_version(),
        "main",
        "restart",
    )
    await ensure_postgres()
    return time.monotonic() - started


async def ensure_postgres() -> None:
    """Make sure PostgreSQL runs and accepts connections."""
    for attempt in range(120):
        status, _ = await run(
            "pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"
        )
        if status == 0:
            return
        if attempt == 10:
            await run(
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                _pg_version(),
                "main",
                "start",
            )
        await asyncio.sleep(0.5)


async def terminate_backends(admin_url: str, database: str) -> int:
    """``pg_terminate_backend`` on the workers' sessions of ``database``."""
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        killed = await conn.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
            "  FROM pg_stat_activity"
            " WHERE application_name = 'ins-worker' AND datname = $1",
            database,
        )
    finally:
        await conn.close()
    return int(killed or 0)
