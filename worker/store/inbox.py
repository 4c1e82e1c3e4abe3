"""The inbox and the outcome store: one outcome per request id.

A request moves ``received → calling → done``. :func:`claim` is the
first thing done with a delivery; :func:`record_outcome` writes the
outcome, the INSi exchanges, the identity change, the log line and the
events in one transaction, and refuses a second outcome for the same id.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

import asyncpg

from worker.errors import StoreUnavailable
from worker.events import OutboxEvent
from worker.insi.model import Exchange
from worker.store.pool import UNAVAILABLE

logger = logging.getLogger(__name__)

ClaimStatus = Literal["new", "resumed", "done", "conflict"]

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


@dataclass(frozen=True, slots=True)
class Claim:
    """What the inbox knew of a request when its delivery arrived."""

    status: ClaimStatus
    deliveries: int
    outcome: str | None = None


@dataclass(slots=True)
class IdentityRow:
    """The ``identities`` row of one (requesting system, patient)."""

    source: str
    patient_ref: str
    status: str
    ins: str | None = None
    oid: str | None = None
    ins_type: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    traits: dict[str, Any] | None = None
    document_type: str | None = None
    document_checked_at: date | None = None
    insi_called_at: datetime | None = None
    version: int = 0


@dataclass(slots=True)
class IdentityChange:
    """A new identity row, what changed, and the events the change raises."""

    row: IdentityRow | None
    changes: list[str]
    events: list[OutboxEvent]


#: computes the identity change from the stored row (or None), in the
#: transaction that holds that row's lock
IdentityUpdate = Callable[[IdentityRow | None], IdentityChange]


def body_digest(body: bytes) -> bytes:
    """SHA-256 of a delivery body: a reused request id is detected by it."""
    return hashlib.sha256(body).digest()


async def claim(
    pool: asyncpg.Pool[Any],
    *,
    request_id: str,
    source: str | None,
    patient_ref: str | None,
    correlation_id: str | None,
    digest: bytes,
) -> Claim:
    """Register a delivery of a request; say what is already known."""
    row = await _fetchrow(
        pool,
        """
        INSERT INTO requests AS r (request_id, source, patient_ref,
                                   correlation_id, body_sha256, state)
        VALUES ($1, $2, $3, $4, $5, 'calling')
        ON CONFLICT (request_id) DO UPDATE
            SET deliveries = r.deliveries + 1,
                state = CASE WHEN r.state = 'done' THEN 'done'
                             ELSE 'calling' END,
                updated_at = now()
        RETURNING state, deliveries, outcome, body_sha256,
                  (xmax = 0) AS inserted
        """,
        request_id,
        source,
        patient_ref,
        correlation_id,
        digest,
    )
    assert row is not None
    if row["body_sha256"] is not None and row["body_sha256"] != digest:
        return Claim("conflict", row["deliveries"], row["outcome"])
    if row["state"] == "done":
        return Claim("done", row["deliveries"], row["outcome"])
    status: ClaimStatus = "new" if row["inserted"] else "resumed"
    return Claim(status, row["deliveries"])


async def record_outcome(
    pool: asyncpg.Pool[Any],
    *,
    request_id: str,
    delivery: int,
    outcome: str,
    reason: str | None,
    result: dict[str, Any],
    exchanges: Sequence[Exchange] = (),
    events: Sequence[OutboxEvent] = (),
    identity_key: tuple[str, str] | None = None,
    identity_update: IdentityUpdate | None = None,
    certificate: str | None = None,
    correlation_id: str | None = None,
    known: bool = True,
    digest: bytes | None = None,
) -> bool:
    """Store the terminal outcome; False if the request already had one.

    ``known=False`` is for a delivery that never reached :func:`claim`
    (an invalid body whose id could still be read).
    """
    try:
        async with pool.acquire(timeout=5.0) as conn, conn.transaction():
            if not known:
                # The digest lets a later, different body under this id
                # be told apart (request_id_reused) from a redelivery.
                await conn.execute(
                    "INSERT INTO requests (request_id, state, body_sha256)"
                    " VALUES ($1, 'calling', $2) ON CONFLICT DO NOTHING",
                    request_id,
                    digest,
                )
            status = await conn.execute(
                """
                UPDATE requests
                   SET state = 'done', outcome = $2, reason = $3,
                       result = $4, completed_at = now(), updated_at = now()
                 WHERE request_id = $1 AND state <> 'done'
                """,
                request_id,
                outcome,
                reason,
                result,
            )
            if status != "UPDATE 1":
                return False

            all_events = list(events)
            if identity_key is not None and identity_update is not None:
                all_events += await _update_identity(
                    conn, request_id, identity_key, identity_update
                )

            await _insert_exchanges(
                conn,
                request_id,
                delivery,
                exchanges,
                certificate,
                correlation_id,
            )
            await insert_events(conn, request_id, all_events)
            await conn.execute(
                "INSERT INTO request_log (request_id, step, detail)"
                " VALUES ($1, 'outcome', $2)",
                request_id,
                {"outcome": outcome, "reason": reason, "delivery": delivery},
            )
    except UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"outcome not stored ({type(exc).__name__})"
        ) from exc
    return True


async def record_step(
    pool: asyncpg.Pool[Any],
    *,
    request_id: str,
    delivery: int,
    step: str,
    detail: dict[str, Any],
    exchanges: Sequence[Exchange] = (),
    certificate: str | None = None,
    correlation_id: str | None = None,
) -> None:
    """Log a non-terminal step (delayed retry...) with its exchanges."""
    try:
        async with pool.acquire(timeout=5.0) as conn, conn.transaction():
            await _insert_exchanges(
                conn,
                request_id,
                delivery,
                exchanges,
                certificate,
                correlation_id,
            )
            await conn.execute(
                "INSERT INTO request_log (request_id, step, detail)"
                " VALUES ($1, $2, $3)",
                request_id,
                step,
                {**detail, "delivery": delivery},
            )
    except UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"step not stored ({type(exc).__name__})"
        ) from exc


async def insert_events(
    conn: Conn,
    request_id: str | None,
    events: Sequence[OutboxEvent],
) -> None:
    """Queue events in the outbox, in the caller's transaction."""
    if not events:
        return
    await conn.executemany(
        "INSERT INTO outbox (event_id, request_id, event_type, routing_key,"
        " body) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (event_id) DO NOTHING",
        [
            (e.event_id, request_id, e.event_type, e.routing_key, e.body)
            for e in events
        ],
    )


async def _update_identity(
    conn: Conn,
    request_id: str,
    key: tuple[str, str],
    update: IdentityUpdate,
) -> list[OutboxEvent]:
    stored = await conn.fetchrow(
        "SELECT * FROM identities WHERE source = $1 AND patient_ref = $2"
        " FOR UPDATE",
        *key,
    )
    previous = _identity_from(stored) if stored is not None else None

    change = update(previous)
    row = change.row
    if row is None:
        return change.events
    await conn.execute(
        """
        INSERT INTO identities AS i (source, patient_ref, status, ins, oid,
            ins_type, history, traits, document_type, document_checked_at,
            insi_called_at, last_request_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (source, patient_ref) DO UPDATE SET
            status = EXCLUDED.status, ins = EXCLUDED.ins,
            oid = EXCLUDED.oid, ins_type = EXCLUDED.ins_type,
            history = EXCLUDED.history, traits = EXCLUDED.traits,
            document_type = EXCLUDED.document_type,
            document_checked_at = EXCLUDED.document_checked_at,
            insi_called_at = EXCLUDED.insi_called_at,
            last_request_id = EXCLUDED.last_request_id,
            version = i.version + 1, updated_at = now()
        """,
        row.source,
        row.patient_ref,
        row.status,
        row.ins,
        row.oid,
        row.ins_type,
        row.history,
        row.traits,
        row.document_type,
        row.document_checked_at,
        row.insi_called_at,
        request_id,
    )
    if change.changes:
        await conn.execute(
            "INSERT INTO identity_changes (source, patient_ref, request_id,"
            " old_status, new_status, old_ins, new_ins, changes)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            row.source,
            row.patient_ref,
            request_id,
            previous.status if previous else None,
            row.status,
            previous.ins if previous else None,
            row.ins,
            change.changes,
        )
    return change.events


def _identity_from(record: asyncpg.Record) -> IdentityRow:
    return IdentityRow(
        source=record["source"],
        patient_ref=record["patient_ref"],
        status=record["status"],
        ins=record["ins"],
        oid=record["oid"],
        ins_type=record["ins_type"],
        history=list(record["history"] or []),
        traits=record["traits"],
        document_type=record["document_type"],
        document_checked_at=record["document_checked_at"],
        insi_called_at=record["insi_called_at"],
        version=record["version"],
    )


async def _insert_exchanges(
    conn: Conn,
    request_id: str,
    delivery: int,
    exchanges: Sequence[Exchange],
    certificate: str | None,
    correlation_id: str | None,
) -> None:
    if not exchanges:
        return
    await conn.executemany(
        """
        INSERT INTO insi_calls (request_id, delivery, operation, message_id,
            correlation_id, started_at, duration_ms, http_status, cr_code,
            error_kind, fault_code, search, request_xml, response_xml,
            certificate)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                $14, $15)
        """,
        [
            (
                request_id,
                delivery,
                str(x.operation),
                x.message_id,
                correlation_id,
                x.started_at,
                x.duration_s * 1000.0,
                x.http_status,
                x.result.cr_code if x.result else None,
                x.error_kind,
                x.fault_code,
                _search_json(x),
                x.request_xml,
                x.response_xml,
                certificate,
            )
            for x in exchanges
        ],
    )


def _search_json(exchange: Exchange) -> dict[str, Any]:
    s = exchange.search
    return {
        "birth_name": s.birth_name,
        "first_names": list(s.first_names),
        "sex": s.sex,
        "birth_date": s.birth_date,
        "birth_place": s.birth_place,
    }


async def _fetchrow(
    pool: asyncpg.Pool[Any], query: str, *args: Any
) -> asyncpg.Record | None:
    try:
        async with pool.acquire(timeout=5.0) as conn:
            return await conn.fetchrow(query, *args)
    except UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"inbox not reachable ({type(exc).__name__})"
        ) from exc
