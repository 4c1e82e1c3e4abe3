"""Least privilege in PostgreSQL, and SQL that is parameterised throughout.

A database of its own, owned by a migration role; the worker connects as
``ins_worker_app``, a LOGIN role that migration 0004 gives exactly what
the worker needs. The roles are created here when missing (the DBA's job
in a real installation) and left in place: they own nothing once the
test database is dropped.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from worker_harness import CN, request_body, running_worker, traits

from worker import events, retention
from worker.insi.model import Exchange, Operation, TraitsSearch
from worker.ratelimit import RateLimiter
from worker.settings import Settings
from worker.store import inbox, migrate
from worker.store.pool import create_pool

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[1]

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "ins_worker_privileges_test"
OWNER = "ins_worker_owner"
APP = "ins_worker_app"
OWNER_URL = f"postgresql://{OWNER}@127.0.0.1:5432/{DATABASE}"
APP_URL = f"postgresql://{APP}@127.0.0.1:5432/{DATABASE}"

ADRTROIS = traits("Adrtrois", ["Toussaint"], "M", "1960-01-01")

#: the audit trail: the worker appends to it, never rewrites or erases it
AUDIT_TABLES = ("insi_calls", "request_log", "identity_changes")


async def _prepare() -> None:
    admin = await asyncpg.connect(ADMIN, timeout=10)
    try:
        for role in (OWNER, APP):
            exists = await admin.fetchval(
                "SELECT 1 FROM pg_roles WHERE rolname = $1", role
            )
            if not exists:
                # Identifiers cannot be parameters; these are constants.
                await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        await admin.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{OWNER}"')
    finally:
        await admin.close()
    await migrate.apply(OWNER_URL)


async def _drop() -> None:
    admin = await asyncpg.connect(ADMIN, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def privileges_database() -> Iterator[str]:
    """A database owned by the owner role, migrated by it."""
    asyncio.run(_prepare())
    yield DATABASE
    asyncio.run(_drop())


@pytest.fixture
async def app_conn(privileges_database: str) -> AsyncIterator[Any]:
    """A connection as the worker's role."""
    conn = await asyncpg.connect(APP_URL, timeout=10)
    yield conn
    await conn.close()


@pytest.fixture
async def owner_conn(privileges_database: str) -> AsyncIterator[Any]:
    """A connection as the owner, jsonb decoded, tables emptied."""
    conn = await asyncpg.connect(OWNER_URL, timeout=10)
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )
    await conn.execute(
        "TRUNCATE requests, insi_calls, request_log, identities,"
        " identity_changes, outbox, insi_rate_slots"
    )
    yield conn
    await conn.close()


def _exchange() -> Exchange:
    return Exchange(
        operation=Operation.TRAITS_SEARCH,
        search=TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01"),
        message_id=f"uuid:{uuid.uuid4()}",
        started_at=datetime.now(UTC),
        request_xml=b"<soap/>",
        response_xml=b"<soap/>",
        http_status=200,
    )


async def test_worker_role_claims_records_and_rate_limits(
    privileges_database: str, owner_conn: Any
) -> None:
    """As ``ins_worker_app``: claim, record with audit rows and events."""
    pool = await create_pool(APP_URL, min_size=1, max_size=2)
    request_id = str(uuid.uuid4())
    try:
        claim = await inbox.claim(
            pool,
            request_id=request_id,
            source="urn:example:pas:test",
            patient_ref="ipp/1",
            correlation_id="c-1",
            digest=inbox.body_digest(b"{}"),
        )
        again = await inbox.claim(
            pool,
            request_id=request_id,
            source="urn:example:pas:test",
            patient_ref="ipp/1",
            correlation_id="c-1",
            digest=inbox.body_digest(b"{}"),
        )
        event = events.build(
            "failed",
            events.Requester(request_id, "urn:example:pas:test", "ipp/1"),
            {"outcome": "failed"},
            source="urn:test",
        )
        await inbox.record_step(
            pool,
            request_id=request_id,
            delivery=1,
            step="delayed_retry",
            detail={"tier": 1},
            exchanges=[_exchange()],
        )
        stored = await inbox.record_outcome(
            pool,
            request_id=request_id,
            delivery=2,
            outcome="failed",
            reason="retries_exhausted",
            result={"outcome": "failed"},
            exchanges=[_exchange()],
            events=[event],
        )
        limiter = RateLimiter(pool, 50.0)
        await limiter.acquire(deadline=asyncio.get_running_loop().time() + 5)
        async with pool.acquire() as conn:
            cleaned = await conn.execute("DELETE FROM insi_rate_slots")
    finally:
        await pool.close()

    assert (claim.status, again.status) == ("new", "resumed")
    assert stored is True
    calls = await owner_conn.fetchval(
        "SELECT count(*) FROM insi_calls WHERE request_id = $1", request_id
    )
    assert calls == 2
    assert (
        await owner_conn.fetchval(
            "SELECT count(*) FROM outbox WHERE request_id = $1", request_id
        )
        == 1
    )
    assert cleaned.startswith("DELETE")


async def test_a_whole_worker_runs_as_the_worker_role(
    privileges_database: str, owner_conn: Any, settings: Settings
) -> None:
    """``serve`` with the app role: start-up check, outcome, event, relay."""
    as_app = dataclasses.replace(
        settings,
        database_url=APP_URL,
        migrate_database_url=OWNER_URL,
        rate_limit_per_s=50.0,
    )
    async with running_worker(as_app, owner_conn) as w:
        request_id, body = request_body(ADRTROIS, document=CN)
        await w.publish(body)
        row = await w.outcome(request_id)
        [event] = await w.take_events(1)
        _, bad = request_body(ADRTROIS, patient="ipp/bad")
        broken = json.loads(bad)
        broken["data"]["traits"]["sex"] = "MM"
        await w.publish(json.dumps(broken).encode())
        [dead] = await w.take_dead_letters(1)

    assert row["outcome"] == "qualified"
    assert event["type"] == "fr.ins.identity.qualified"
    assert (dead.headers or {})["x-ins-reason"] == "schema_invalid"


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE requests",
        "ALTER TABLE requests ADD COLUMN x integer",
        "TRUNCATE requests",
        "TRUNCATE insi_calls",
        "CREATE TABLE mine (x integer)",
        "CREATE INDEX ON requests (source)",
        "DROP FUNCTION outbox_notify() CASCADE",
        "SELECT ins_worker_grant_app('ins_worker_app')",
        "SELECT setval('outbox_id_seq', 1)",
        "INSERT INTO schema_migrations VALUES (99, 'x', 'x')",
    ],
)
async def test_worker_role_cannot_change_the_schema(
    app_conn: Any, statement: str
) -> None:
    """Schema changes, truncation, sequence resets: all refused."""
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await app_conn.execute(statement)


@pytest.mark.parametrize("table", [*AUDIT_TABLES, "requests", "outbox"])
async def test_worker_role_cannot_delete_what_it_keeps(
    app_conn: Any, table: str
) -> None:
    """No DELETE on the audit trail, the inbox or the outbox."""
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await app_conn.execute(f"DELETE FROM {table}")


@pytest.mark.parametrize("table", AUDIT_TABLES)
async def test_worker_role_cannot_read_or_rewrite_the_audit_trail(
    app_conn: Any, table: str
) -> None:
    """Append-only: no UPDATE, and no SELECT of raw exchanges either."""
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await app_conn.execute(f"UPDATE {table} SET id = id")
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await app_conn.fetch(f"SELECT * FROM {table}")


async def test_purge_runs_as_the_owner_not_as_the_worker(
    app_conn: Any, owner_conn: Any
) -> None:
    """Retention rewrites the audit trail: the worker's role may not."""
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await retention.purge(app_conn, timedelta(days=365))

    report = await retention.purge(owner_conn, timedelta(days=365))

    assert report.dry_run is False


async def test_roles_given_nothing_get_nothing(owner_conn: Any) -> None:
    """PUBLIC holds no privilege on the worker's tables or sequences."""
    rows = await owner_conn.fetch(
        """
        SELECT c.relname, a.privilege_type
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault(
              CASE WHEN c.relkind = 'S' THEN 's'::"char" ELSE 'r'::"char"
              END, c.relowner))) AS a
         WHERE n.nspname = current_schema()
           AND c.relkind IN ('r', 'S', 'p')
           AND a.grantee = 0
        """
    )

    assert [tuple(r) for r in rows] == []


async def test_every_table_grants_the_worker_role_something(
    owner_conn: Any,
) -> None:
    """A table added without updating ins_worker_grant_app() shows here."""
    rows = await owner_conn.fetch(
        """
        SELECT c.relname,
               has_table_privilege($1, c.oid, 'SELECT') AS s,
               has_table_privilege($1, c.oid, 'INSERT') AS i,
               has_table_privilege($1, c.oid, 'UPDATE') AS u,
               has_table_privilege($1, c.oid, 'DELETE') AS d
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
        """,
        APP,
    )
    granted = {r["relname"]: (r["s"], r["i"], r["u"], r["d"]) for r in rows}

    assert granted == {
        "requests": (True, True, True, False),
        "identities": (True, True, True, False),
        "outbox": (True, True, True, False),
        "insi_calls": (False, True, False, False),
        "request_log": (False, True, False, False),
        "identity_changes": (False, True, False, False),
        "insi_rate_slots": (True, True, True, True),
        "schema_migrations": (True, False, False, False),
    }


# ---- parameterised SQL ------------------------------------------------------

_SQL_CALLS = {
    "execute",
    "executemany",
    "fetch",
    "fetchrow",
    "fetchval",
    "cursor",
    "copy_to_table",
    "copy_records_to_table",
}

#: (file, function) where SQL is built from text, and why it is safe
ALLOWED_DYNAMIC_SQL = {
    # CREATE DATABASE takes no parameters; the name is checked against
    # a plain-identifier pattern just before and double-quoted.
    ("worker/store/migrate.py", "ensure_database"),
}


def _built(node: ast.expr, local: dict[str, ast.expr]) -> bool:
    """Whether ``node`` is text assembled at run time."""
    if isinstance(node, ast.Name) and node.id in local:
        return _built(local[node.id], {})
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp):
        # "..." "..." is one constant; "..." + x and "..." % x are not
        return not (
            isinstance(node.left, ast.Constant)
            and isinstance(node.right, ast.Constant)
        )
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "join", "replace")
    )


def _dynamic_sql(path: Path) -> Iterator[tuple[str, int]]:
    tree = ast.parse(path.read_text("utf-8"))
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        local = {
            target.id: node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _SQL_CALLS
                and node.args
                and _built(node.args[0], local)
            ):
                yield function.name, node.lineno


def test_every_sql_statement_of_the_worker_is_a_constant() -> None:
    """Values travel as $n parameters: no f-string, + or format() SQL."""
    found = []
    for path in sorted((ROOT / "worker").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("worker/simulator/"):
            continue  # test tooling: no database
        for function, line in _dynamic_sql(path):
            if (relative, function) not in ALLOWED_DYNAMIC_SQL:
                found.append(f"{relative}:{line} in {function}()")

    assert found == []


def test_sql_check_catches_text_built_queries(tmp_path: Path) -> None:
    """f-strings, concatenation, % and format(), direct or via a name."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "async def a(conn, n):\n"
        "    await conn.execute(f\"SELECT * FROM t WHERE n = '{n}'\")\n"
        "async def b(conn, n):\n"
        '    sql = "SELECT * FROM t WHERE n = \'" + n + "\'"\n'
        "    await conn.fetch(sql)\n"
        "async def c(conn, n):\n"
        '    await conn.fetchrow("SELECT %s" % n)\n'
        "async def d(conn, n):\n"
        '    await conn.fetchval("SELECT {}".format(n))\n'
        "async def fine(conn, n, query):\n"
        '    await conn.execute("SELECT $1" " AS x", n)\n'
        "    await conn.execute(query, n)\n"
    )

    assert list(_dynamic_sql(sample)) == [
        ("a", 2),
        ("b", 5),
        ("c", 7),
        ("d", 9),
    ]
