"""The retention period: purge old raw INSi XML and old sent events.

An INSi exchange older than the period loses its raw request and
response (``request_xml``, ``response_xml`` set to NULL, ``raw_purged_at``
set); its row stays, so the audit still shows when, which call, which
result and under which certificate. A sent outbox row older than the
period (by its ``sent_at``) is deleted; an unsent one is never touched,
whatever its age.

Work goes in batches, each its own short transaction that skips rows
another session holds, so a purge never locks a table for long and can
run beside the worker.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500

_DURATION = re.compile(r"([0-9]+)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_PURGE_RAW = """
    WITH batch AS (
        SELECT id FROM insi_calls
         WHERE raw_purged_at IS NULL AND started_at < $1
         ORDER BY started_at
         LIMIT $2
           FOR UPDATE SKIP LOCKED
    )
    UPDATE insi_calls AS c
       SET request_xml = NULL, response_xml = NULL, raw_purged_at = now()
      FROM batch
     WHERE c.id = batch.id
"""

_DELETE_SENT = """
    WITH batch AS (
        SELECT id FROM outbox
         WHERE sent_at < $1
         ORDER BY sent_at
         LIMIT $2
           FOR UPDATE SKIP LOCKED
    )
    DELETE FROM outbox AS o
     USING batch
     WHERE o.id = batch.id
"""

_COUNT_RAW = (
    "SELECT count(*) FROM insi_calls"
    " WHERE raw_purged_at IS NULL AND started_at < $1"
)
_COUNT_SENT = "SELECT count(*) FROM outbox WHERE sent_at < $1"


def parse_duration(text: str) -> timedelta:
    """``365d``, ``12h``, ``30m``, ``2w``, ``90s``: a positive duration.

    Raises ``ValueError`` for anything else, zero included: a purge of
    everything is never what a typo should do.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            "a duration is a number and a unit: s, m, h, d or w (365d)"
        )
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds <= 0:
        raise ValueError("the duration must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """A duration in the largest unit that divides it (``365d``)."""
    seconds = int(duration.total_seconds())
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge did (or, in a dry run, would do)."""

    cutoff: datetime
    raw_exchanges: int
    sent_events: int
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "cutoff": self.cutoff.isoformat(),
            "raw_exchanges": self.raw_exchanges,
            "sent_events": self.sent_events,
            "dry_run": self.dry_run,
        }


async def purge(
    conn: asyncpg.Connection[Any],
    older_than: timedelta,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> PurgeReport:
    """Apply the retention period ``older_than`` (see the module)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    # The database's clock, the one that stamped the rows.
    cutoff: datetime = await conn.fetchval(
        "SELECT now() - $1::interval", older_than
    )

    if dry_run:
        raw = await conn.fetchval(_COUNT_RAW, cutoff)
        sent = await conn.fetchval(_COUNT_SENT, cutoff)
        return PurgeReport(cutoff, int(raw), int(sent), dry_run=True)

    raw = await _in_batches(conn, _PURGE_RAW, cutoff, batch_size)
    sent = await _in_batches(conn, _DELETE_SENT, cutoff, batch_size)
    logger.info("purge_done raw_exchanges=%d sent_events=%d", raw, sent)
    return PurgeReport(cutoff, raw, sent, dry_run=False)


async def _in_batches(
    conn: asyncpg.Connection[Any],
    statement: str,
    cutoff: datetime,
    batch_size: int,
) -> int:
    total = 0
    while True:
        # Outside any transaction block: each batch commits on its own.
        status = await conn.execute(statement, cutoff, batch_size)
        done = int(status.rsplit(" ", 1)[-1])
        total += done
        # A short batch is the last: what it skipped is locked by
        # someone else right now and waits for the next purge.
        if done < batch_size:
            return total
