"""Counting a run: lost, duplicated, unexpected, recovered, and events.

The four words are RabbitMQ's own (its fault-injection suite):

- **lost**: a request the broker accepted that never produced an
  outcome (no stored outcome, no dead letter where one is expected, or a
  valid request that ended in the dead-letter queue instead);
- **duplicated**: two outcomes for one request id. The ``requests``
  table cannot hold two, so the events say it: more than one primary
  outcome event type for one request, or one that disagrees with the
  stored outcome;
- **unexpected**: an outcome, an event or a dead letter for an id that
  nobody published;
- **recovered**: a request whose processing a fault interrupted (more
  than one delivery, a delayed retry, a pause, a failed INSi exchange)
  and which still got its outcome.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg

from .traffic import Request

#: event types that are a request's outcome (the others follow one)
PRIMARY = frozenset(
    {
        "qualified",
        "retrieved",
        "not_found",
        "ambiguous",
        "mismatch",
        "anomaly",
        "rejected",
        "failed",
    }
)


async def drain_queue(
    url: str, queue_name: str, idle_s: float = 3.0
) -> list[tuple[bytes, str | None, dict[str, Any]]]:
    """Every message of ``queue_name``: (body, message id, headers)."""
    connection = await aio_pika.connect(
        url,
        timeout=10,
        client_properties={"connection_name": "ins-faults reader"},
    )
    out: list[tuple[bytes, str | None, dict[str, Any]]] = []
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        queue = await channel.get_queue(queue_name, ensure=False)
        async with queue.iterator() as messages:
            while True:
                try:
                    message = await asyncio.wait_for(
                        messages.__anext__(), idle_s
                    )
                except (TimeoutError, StopAsyncIteration):
                    break
                out.append(
                    (
                        message.body,
                        message.message_id,
                        dict(message.headers or {}),
                    )
                )
                await message.ack()
    finally:
        await connection.close()
    return out


@dataclass(slots=True)
class Figures:
    """The result of a run."""

    requests: int = 0
    accepted: int = 0
    outcomes: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    recovered: int = 0
    recovered_by: dict[str, int] = field(default_factory=dict)
    missing_event: list[str] = field(default_factory=list)
    events_received: int = 0
    distinct_events: int = 0
    duplicate_events: int = 0
    events_per_request: float = 0.0
    event_types: dict[str, int] = field(default_factory=dict)
    outcome_types: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    dead_letter_problems: list[str] = field(default_factory=list)
    max_deliveries: int = 0
    insi_calls: int = 0
    insi_failed_calls: int = 0

    @property
    def passed(self) -> bool:
        """Nothing lost, doubled or unexpected; every event and dead letter."""
        return not (
            self.lost
            or self.duplicated
            or self.unexpected
            or self.missing_event
            or self.dead_letter_problems
        )

    def summary(self) -> dict[str, Any]:
        """Counts (and a few example ids) for the report."""

        def head(ids: list[str]) -> dict[str, Any]:
            return {"count": len(ids), "examples": ids[:5]}

        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "outcomes": self.outcomes,
            "lost": head(self.lost),
            "duplicated": head(self.duplicated),
            "unexpected": head(self.unexpected),
            "recovered": self.recovered,
            "recovered_by": self.recovered_by,
            "missing_event": head(self.missing_event),
            "events_received": self.events_received,
            "distinct_events": self.distinct_events,
            "duplicate_events": self.duplicate_events,
            "events_per_request": round(self.events_per_request, 3),
            "event_types": self.event_types,
            "outcome_types": self.outcome_types,
            "dead_letters": self.dead_letters,
            "dead_letter_problems": head(self.dead_letter_problems),
            "max_deliveries": self.max_deliveries,
            "insi_calls": self.insi_calls,
            "insi_failed_calls": self.insi_failed_calls,
        }


async def count(
    db: asyncpg.Connection[Any],
    requests: list[Request],
    accepted: set[str],
    events: list[tuple[bytes, str | None, dict[str, Any]]],
    dead: list[tuple[bytes, str | None, dict[str, Any]]],
) -> Figures:
    """Compare what was published with what the stores and queues hold."""
    figures = Figures(requests=len(requests), accepted=len(accepted))
    published = {r.message_id: r for r in requests}
    rows = await db.fetch(
        "SELECT request_id::text AS id, state, outcome, deliveries"
        "  FROM requests"
    )
    stored = {r["id"]: r for r in rows}
    figures.outcomes = sum(1 for r in rows if r["state"] == "done")
    figures.outcome_types = dict(
        Counter(r["outcome"] for r in rows if r["outcome"])
    )
    figures.max_deliveries = max((r["deliveries"] for r in rows), default=0)
    figures.unexpected += [i for i in stored if i not in published]

    by_request = _events_by_request(events, published, figures)
    dead_by_id = _dead_letters(dead, published, figures)

    for request in requests:
        rid = request.message_id
        if rid not in accepted:
            continue
        row = stored.get(rid)
        if not request.dead_letter and rid in dead_by_id:
            # The broker's own dead-lettering (delivery limit) included.
            figures.lost.append(rid)
            reason = dead_by_id[rid].get("x-first-death-reason")
            figures.dead_letter_problems.append(f"{rid}:valid:{reason}")
            continue
        if request.has_outcome and (row is None or row["state"] != "done"):
            figures.lost.append(rid)
            continue
        if request.dead_letter and rid not in dead_by_id:
            figures.lost.append(rid)
            continue
        if request.has_outcome and row is not None:
            _check_events(rid, row["outcome"], by_request, figures)

    await _recovered(db, stored, figures)
    with_outcome = max(1, figures.outcomes)
    figures.events_per_request = figures.distinct_events / with_outcome
    return figures


def _events_by_request(
    events: list[tuple[bytes, str | None, dict[str, Any]]],
    published: dict[str, Request],
    figures: Figures,
) -> dict[str, set[str]]:
    seen: set[str] = set()
    types: Counter[str] = Counter()
    by_request: dict[str, set[str]] = {}
    for body, _, _ in events:
        event = json.loads(body)
        figures.events_received += 1
        if event["id"] in seen:
            figures.duplicate_events += 1
            continue
        seen.add(event["id"])
        kind = str(event["type"]).removeprefix("fr.ins.identity.")
        types[kind] += 1
        rid = str(event.get("data", {}).get("request_id"))
        if rid not in published:
            figures.unexpected.append(f"event:{event['id']}")
            continue
        by_request.setdefault(rid, set()).add(kind)
    figures.distinct_events = len(seen)
    figures.event_types = dict(types)
    return by_request


def _dead_letters(
    dead: list[tuple[bytes, str | None, dict[str, Any]]],
    published: dict[str, Request],
    figures: Figures,
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for _, message_id, headers in dead:
        figures.dead_letters += 1
        if message_id is None or message_id not in published:
            figures.unexpected.append(f"dead_letter:{message_id}")
            continue
        request = published[message_id]
        if request.dead_letter and headers.get("x-ins-reason") != request.kind:
            figures.dead_letter_problems.append(
                f"{message_id}:reason:{headers.get('x-ins-reason')}"
            )
        found[message_id] = headers
    return found


def _check_events(
    rid: str,
    outcome: str,
    by_request: dict[str, set[str]],
    figures: Figures,
) -> None:
    kinds = by_request.get(rid, set())
    primary = kinds & PRIMARY
    if len(primary) > 1 or (primary and primary != {outcome}):
        figures.duplicated.append(rid)
    elif outcome not in kinds:
        figures.missing_event.append(rid)


async def _recovered(
    db: asyncpg.Connection[Any],
    stored: dict[str, asyncpg.Record],
    figures: Figures,
) -> None:
    steps = await db.fetch(
        "SELECT DISTINCT request_id::text AS id, step FROM request_log"
        " WHERE step IN ('delayed_retry', 'paused')"
    )
    calls = await db.fetch(
        "SELECT request_id::text AS id, count(*) AS calls,"
        "       count(*) FILTER (WHERE error_kind IS NOT NULL) AS failed"
        "  FROM insi_calls GROUP BY request_id"
    )
    marks: dict[str, set[str]] = {}
    for row in steps:
        marks.setdefault(row["id"], set()).add(row["step"])
    for row in calls:
        figures.insi_calls += row["calls"]
        figures.insi_failed_calls += row["failed"]
        if row["failed"]:
            marks.setdefault(row["id"], set()).add("insi_error")
    for rid, row in stored.items():
        if row["deliveries"] > 1:
            marks.setdefault(rid, set()).add("redelivered")
    by: Counter[str] = Counter()
    for rid, kinds in marks.items():
        row = stored.get(rid)
        if row is None or row["state"] != "done":
            continue
        figures.recovered += 1
        by.update(kinds)
    figures.recovered_by = dict(by)
