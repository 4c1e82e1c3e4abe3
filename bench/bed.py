"""The test bed of one benchmark: servers, names, database, CPU groups.

Each measurement gets exchanges and queues of its own (``bench.<tag>.*``
on the default vhost) and starts on empty tables of the ``bench``
database, which is dropped and migrated afresh at the start of a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractConnection

from bench import procstat
from bench.baseline import CREATE_TABLE
from bench.services import SimulatorService, clean_env, worker_command
from worker import topology
from worker.settings import Settings

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/ins_worker_bench"

#: processes of the database that serve every client (WAL, checkpoints)
_SHARED_PG = "datname IS NULL"


@dataclass(frozen=True, slots=True)
class Names:
    """Exchange and queue names of one measurement."""

    tag: str
    settings: Settings

    @classmethod
    def fresh(cls, amqp_url: str) -> Names:
        """Names nobody else uses."""
        tag = f"bench.{uuid.uuid4().hex[:10]}"
        settings = dataclasses.replace(
            Settings(),
            amqp_url=amqp_url,
            requests_exchange=f"{tag}.requests",
            requests_queue=f"{tag}.requests.v1",
            dead_letter_exchange=f"{tag}.dlx",
            dead_letter_queue=f"{tag}.dlq",
            events_exchange=f"{tag}.events",
            event_source=f"urn:ins-worker:{tag}",
        )
        return cls(tag, settings)

    def worker_env(self, database_url: str, insi_url: str) -> dict[str, str]:
        """The ``INS_WORKER_*`` settings naming these queues."""
        s = self.settings
        return {
            "INS_WORKER_AMQP_URL": s.amqp_url,
            "INS_WORKER_DATABASE_URL": database_url,
            "INS_WORKER_REQUESTS_EXCHANGE": s.requests_exchange,
            "INS_WORKER_REQUESTS_QUEUE": s.requests_queue,
            "INS_WORKER_DEAD_LETTER_EXCHANGE": s.dead_letter_exchange,
            "INS_WORKER_DEAD_LETTER_QUEUE": s.dead_letter_queue,
            "INS_WORKER_EVENTS_EXCHANGE": s.events_exchange,
            "INS_WORKER_EVENT_SOURCE": s.event_source,
            "INS_WORKER_INSI_URL": insi_url,
        }


@dataclass(slots=True)
class Bed:
    """Everything the measurements share."""

    amqp_url: str
    database_url: str
    out_dir: Path
    simulator: SimulatorService
    worker_command: list[str]
    worker_env: dict[str, str]
    db: asyncpg.Connection[Any]
    publishing: AbstractConnection
    collecting: AbstractConnection
    broker_pids: list[int] = field(default_factory=list)
    postmaster: int | None = None

    async def reconnect(self) -> None:
        """Open the harness's connections again where they were lost."""
        if not await _usable(self.publishing):
            self.publishing = await aio_pika.connect(self.amqp_url, timeout=10)
        if not await _usable(self.collecting):
            self.collecting = await aio_pika.connect(self.amqp_url, timeout=10)
        if self.db.is_closed():
            self.db = await asyncpg.connect(self.database_url, timeout=10)
        self.broker_pids = procstat.pids_named("beam.smp")

    def alive(self) -> bool:
        """Whether the harness's connections are still there."""
        return not self.disturbed

    @property
    def disturbed(self) -> bool:
        """Whether a connection was lost (a broker restart, say)."""
        return self.db.is_closed() or not (
            _open(self.publishing) and _open(self.collecting)
        )

    async def background_cores(self, seconds: float = 1.0) -> float:
        """Cores busy with anything but this harness's own processes."""
        ours = [self.simulator.pid, os.getpid()]
        before = procstat.read({"ours": ours})
        await asyncio.sleep(seconds)
        after = procstat.read({"ours": ours})
        used = procstat.used(before, after)
        return max(0.0, used["machine"] - used["ours"]) / seconds

    async def wait_quiet(self, cores: float, patience_s: float) -> float:
        """Wait (up to ``patience_s``) until others use under ``cores``.

        Other sessions share the machine; a measurement taken while they
        run a test suite says more about them than about the worker.
        Returns the background load finally seen.
        """
        deadline = time.monotonic() + patience_s
        while True:
            load = await self.background_cores()
            if load < cores or time.monotonic() >= deadline:
                return load

    async def fresh_tables(self) -> None:
        """Empty every table of the bench database."""
        names = await self.db.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'schema_migrations'"
        )
        listed = ", ".join(f'"{r["tablename"]}"' for r in names)
        await self.db.execute(f"TRUNCATE {listed} RESTART IDENTITY")

    async def declare(self, names: Names) -> AbstractChannel:
        """The worker's topology for ``names``; a confirming channel."""
        channel = await self.publishing.channel(publisher_confirms=True)
        await topology.declare(channel, names.settings)
        return channel

    async def remove(self, names: Names) -> None:
        """Delete the queues and exchanges of ``names``."""
        s = names.settings
        await self.reconnect()  # a run may end on a lost connection
        channel = await self.publishing.channel()
        queues = [s.requests_queue, s.dead_letter_queue]
        queues += [t.queue for t in topology.retry_tiers(s)]
        for queue in queues:
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
        exchanges = (
            s.requests_exchange,
            s.dead_letter_exchange,
            s.events_exchange,
        )
        for exchange in exchanges:
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
        with contextlib.suppress(Exception):
            await channel.close()

    async def database_pids(self) -> list[int]:
        """Backends on the bench database, and the shared processes."""
        rows = await self.db.fetch(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            f" AND (datname = current_database() OR {_SHARED_PG})"
        )
        return [r["pid"] for r in rows]

    async def reading(self, subjects: Mapping[str, Sequence[int]]) -> Any:
        """CPU of the subjects, broker, database, simulator and harness."""
        groups: dict[str, Sequence[int]] = {
            **subjects,
            "broker": self.broker_pids,
            "database": await self.database_pids(),
            "database_all": procstat.pids_named("postgres"),
            "simulator": [self.simulator.pid],
            "harness": [os.getpid()],
        }
        reaped = {"database_all": self.postmaster} if self.postmaster else None
        return procstat.read(groups, reaped)

    async def close(self) -> None:
        """Close the harness's connections and stop the simulator."""
        for closing in (self.publishing, self.collecting):
            with contextlib.suppress(Exception):
                await closing.close()
        with contextlib.suppress(Exception):
            await self.db.close()
        await self.simulator.stop()


def _open(connection: AbstractConnection) -> bool:
    # aio-pika may not notice at once that aiormq's connection is gone.
    inner = getattr(getattr(connection, "transport", None), "connection", None)
    return not connection.is_closed and not getattr(inner, "is_closed", True)


async def _usable(connection: AbstractConnection) -> bool:
    if not _open(connection):
        return False
    try:
        channel = await connection.channel()
        await channel.close()
    except Exception:  # any failure means: connect again
        return False
    return True


async def reset_database(database_url: str) -> None:
    """Drop the bench database's schema and migrate it afresh.

    Uses ``ins-worker migrate --create-database``, as an operator would.
    """
    with contextlib.suppress(asyncpg.InvalidCatalogNameError):
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            await conn.execute(
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
            )
        finally:
            await conn.close()
    command = [*worker_command(None)[:-1], "migrate", "--create-database"]
    env = clean_env({"INS_WORKER_DATABASE_URL": database_url})
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed: {done.stderr.strip()}")
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute(CREATE_TABLE)
    finally:
        await conn.close()


async def open_bed(
    *,
    amqp_url: str,
    database_url: str,
    out_dir: Path,
    worker_cmd: str | None,
    worker_env: Mapping[str, str],
) -> Bed:
    """Migrate, start the simulator, connect; the caller closes it.

    ``out_dir`` (for the logs) must exist.
    """
    await reset_database(database_url)
    simulator = SimulatorService(out_dir)
    await simulator.start()
    db = await asyncpg.connect(database_url, timeout=10)
    publishing = await aio_pika.connect(amqp_url, timeout=10)
    collecting = await aio_pika.connect(amqp_url, timeout=10)
    postgres = procstat.pids_named("postgres")
    return Bed(
        amqp_url=amqp_url,
        database_url=database_url,
        out_dir=out_dir,
        simulator=simulator,
        worker_command=worker_command(worker_cmd),
        worker_env=dict(worker_env),
        db=db,
        publishing=publishing,
        collecting=collecting,
        broker_pids=procstat.pids_named("beam.smp"),
        postmaster=procstat.postmaster_pid(postgres),
    )
