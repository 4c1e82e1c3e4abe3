"""Apply the plain SQL migrations in order, once each.

Each file ``NNNN_name.sql`` runs in its own transaction and is recorded
with its checksum; an applied file that changed afterwards is an error, so
that every database runs exactly the schema the code was tested with. An
advisory lock lets several pods start at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from worker.errors import ConfigurationError
from worker.paths import MIGRATIONS

logger = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x1E5_0001


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load(folder: Path = MIGRATIONS) -> list[Migration]:
    """Every migration of ``folder``, in version order."""
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ConfigurationError(f"bad migration file name {path.name}")
        found.append(
            Migration(int(match[1]), match[2], path.read_text("utf-8"))
        )
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigurationError("two migrations share a version")
    return found


async def apply(url: str, folder: Path = MIGRATIONS) -> list[int]:
    """Apply what is missing; return the versions applied now."""
    migrations = load(folder)
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await conn.fetch(
            "SELECT version, checksum FROM schema_migrations"
        )
        applied = {r["version"]: r["checksum"] for r in rows}
        done = []
        for migration in migrations:
            known = applied.get(migration.version)
            if known is not None:
                if known != migration.checksum:
                    raise ConfigurationError(
                        f"migration {migration.version} changed after it "
                        "was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum)"
                    " VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            logger.info(
                "migration_applied version=%d name=%s",
                migration.version,
                migration.name,
            )
            done.append(migration.version)
        return done
    finally:
        await conn.close()


async def pending(url: str, folder: Path = MIGRATIONS) -> list[int]:
    """Versions not yet applied (readiness refuses to start on any)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        exists = await conn.fetchval(
            "SELECT to_regclass('schema_migrations') IS NOT NULL"
        )
        applied = set()
        if exists:
            applied = {
                r["version"]
                for r in await conn.fetch(
                    "SELECT version FROM schema_migrations"
                )
            }
        return [m.version for m in load(folder) if m.version not in applied]
    finally:
        await conn.close()


async def ensure_database(url: str) -> bool:
    """Create the URL's database if it does not exist; True if created."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigurationError("database name must be a plain identifier")
    admin = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        if await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", name
        ):
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        logger.info("database_created")
        return True
    finally:
        await conn.close()
