"""``ins-worker demo``: the whole job once, on the local servers.

Applies the migrations, starts the INSi simulator in this process on
127.0.0.1, publishes one request per public test identity (and a few
that must be refused), runs the worker until every request has an
outcome and its event was received, prints a table, and exits 0.
The identities are the Cnam's public test persons, not real patients.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg

from worker import topology
from worker.app import serve
from worker.settings import Settings
from worker.store import migrate


@dataclass(frozen=True, slots=True)
class Case:
    """One demo request and what it shows."""

    label: str
    traits: dict[str, Any]
    document: dict[str, str] | None = None
    ins: dict[str, str] | None = None
    attributes: tuple[str, ...] = ()
    raw: bytes | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def _t(name: str, first: list[str], sex: str, born: str) -> dict[str, Any]:
    return {
        "birth_name": name,
        "first_names": first,
        "sex": sex,
        "birth_date": born,
    }


CN = {"type": "CN", "checked_at": "2026-12-04"}
PA = {"type": "PA", "checked_at": "2026-12-04"}


def cases() -> list[Case]:
    """The demo's requests (fresh request ids on every run)."""
    return [
        Case(
            "00, ID card", _t("Adrtrois", ["Toussaint"], "M", "1960-01-01"), CN
        ),
        Case(
            "00 with history",
            _t("Ecetinsi", ["Pierre-Alain"], "M", "2009-07-14"),
            PA,
        ),
        Case("00, no document", _t("Corse", ["Anthony"], "M", "1980-03-02")),
        Case(
            "02, several", _t("De Vinci", ["Leonardo"], "M", "2014-02-01"), CN
        ),
        Case("01, none", _t("Houilles", ["Pierre"], "M", "1993-01-27"), CN),
        Case(
            "1st name order",
            _t("Tchitchi", ["Ola", "Catarina"], "F", "1936-06-21"),
            CN,
        ),
        Case("00, ID card", _t("Adrun", ["Zoé"], "F", "1975-12-31"), CN),
        Case(
            "verify INS",
            _t("Nessi", ["Michelangelo", "Anthony"], "M", "2010-08-07"),
            CN,
            ins={"value": "110086322083060", "oid": "1.2.250.1.213.1.4.8"},
        ),
        Case(
            "verify old INS",
            _t("Ecetinsi", ["Pierre-Alain"], "M", "2009-07-14"),
            PA,
            ins={"value": "209076322083439", "oid": "1.2.250.1.213.1.4.8"},
        ),
        Case(
            "douteuse",
            _t("Adrun", ["Zoe"], "F", "1975-12-31"),
            CN,
            attributes=("douteuse",),
        ),
        Case("not JSON", {}, raw=b"\x00this is not a request"),
    ]


def request_body(case: Case, source: str) -> bytes:
    """The CloudEvent a requesting system would publish for ``case``."""
    if case.raw is not None:
        return case.raw
    data: dict[str, Any] = {"traits": case.traits}
    if case.document:
        data["document"] = case.document
    if case.ins:
        data["ins"] = case.ins
    if case.attributes:
        data["attributes"] = list(case.attributes)
    return json.dumps(
        {
            "specversion": "1.0",
            "type": "fr.ins.identity.verification.requested.v1",
            "source": source,
            "id": case.request_id,
            "subject": f"ipp/{case.request_id[:8]}",
            "datacontenttype": "application/json",
            "correlationid": f"demo-{case.request_id[:8]}",
            "data": data,
        }
    ).encode()


async def run_demo(base: Settings, timeout_s: float = 90.0) -> int:
    """Run the demo; 0 when every request got its outcome and event."""
    started = time.monotonic()
    await migrate.ensure_database(base.migration_url)
    await migrate.apply(base.migration_url)

    from worker.simulator.server import Simulator

    simulator = Simulator()
    url = await simulator.start("127.0.0.1", 0)
    settings = dataclasses.replace(base, insi_url=url, health_port=0)
    demo_cases = cases()

    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        await topology.declare(channel, settings)
        events = await _listen(channel, settings.events_exchange, "identity.#")
        dead = await _listen(channel, settings.dead_letter_exchange, "#")
        dlq_ids = {c.request_id for c in demo_cases if c.raw is not None}
        await _publish(channel, settings, demo_cases)

        stop = asyncio.Event()
        worker = asyncio.create_task(
            serve(settings, stop, install_signals=False)
        )
        try:
            seen = await _collect(
                settings,
                events,
                dead,
                demo_cases,
                dlq_ids,
                deadline=started + timeout_s,
            )
        finally:
            stop.set()
            await worker
    finally:
        await connection.close()
        await simulator.stop()

    complete = _print(demo_cases, seen)
    print(
        f"\n{len(demo_cases)} requests in {time.monotonic() - started:.1f}"
        f" s; {'all' if complete else 'NOT all'} reported."
    )
    return 0 if complete else 1


async def _listen(
    channel: aio_pika.abc.AbstractChannel, exchange_name: str, key: str
) -> aio_pika.abc.AbstractQueue:
    # Exclusive queues vanish with the demo's connection: the demo leaves
    # no binding behind that would swallow a real deployment's messages.
    exchange = await channel.get_exchange(exchange_name)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=key)
    return queue


async def _publish(
    channel: aio_pika.abc.AbstractChannel,
    settings: Settings,
    demo_cases: list[Case],
) -> None:
    exchange = await channel.get_exchange(settings.requests_exchange)
    source = "urn:example:pas:demo-hospital"
    for case in demo_cases:
        await exchange.publish(
            aio_pika.Message(
                request_body(case, source),
                content_type="application/json",
                message_id=case.request_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=settings.requests_routing_key,
        )


@dataclass(slots=True)
class Seen:
    """What the demo observed for one request."""

    outcome: str | None = None
    reason: str | None = None
    events: list[str] = field(default_factory=list)
    ins: str | None = None


async def _collect(
    settings: Settings,
    events: aio_pika.abc.AbstractQueue,
    dlq: aio_pika.abc.AbstractQueue,
    demo_cases: list[Case],
    dlq_ids: set[str],
    *,
    deadline: float,
) -> dict[str, Seen]:
    seen = {c.request_id: Seen() for c in demo_cases}
    pool = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        while time.monotonic() < deadline:
            await _drain_events(events, seen)
            await _drain_dead_letters(dlq, seen, dlq_ids)
            await _read_outcomes(pool, seen)
            if all(_complete(s, rid in dlq_ids) for rid, s in seen.items()):
                break
            await asyncio.sleep(0.2)
    finally:
        await pool.close()
    return seen


def _complete(seen: Seen, dead_letter_only: bool) -> bool:
    if dead_letter_only:
        return seen.outcome is not None
    return seen.outcome is not None and bool(seen.events)


async def _drain_events(
    queue: aio_pika.abc.AbstractQueue, seen: dict[str, Seen]
) -> None:
    while True:
        message = await queue.get(fail=False, timeout=5)
        if message is None:
            return
        event = json.loads(message.body)
        await message.ack()
        entry = seen.get(event.get("data", {}).get("request_id"))
        if entry is None:
            continue  # an event of an earlier run
        kind = event["type"].removeprefix("fr.ins.identity.")
        if kind not in entry.events:
            entry.events.append(kind)
        ins = event["data"].get("ins")
        if ins:
            entry.ins = ins.get("value")


async def _drain_dead_letters(
    queue: aio_pika.abc.AbstractQueue, seen: dict[str, Seen], ids: set[str]
) -> None:
    while True:
        message = await queue.get(fail=False, timeout=5)
        if message is None:
            return
        await message.ack()
        if message.message_id in ids:
            entry = seen[message.message_id]
            entry.outcome = "dead-lettered"
            entry.reason = str((message.headers or {}).get("x-ins-reason"))


async def _read_outcomes(
    conn: asyncpg.Connection[Any], seen: dict[str, Seen]
) -> None:
    rows = await conn.fetch(
        "SELECT request_id::text AS id, outcome, reason FROM requests"
        " WHERE request_id = ANY($1::uuid[]) AND state = 'done'",
        list(seen),
    )
    for row in rows:
        seen[row["id"]].outcome = row["outcome"]
        seen[row["id"]].reason = row["reason"]


def _print(demo_cases: list[Case], seen: dict[str, Seen]) -> bool:
    header = (
        f"{'request':<10} {'case':<17} {'outcome':<26} {'INS':<16} events"
    )
    print(header)
    print("-" * len(header))
    complete = True
    for case in demo_cases:
        entry = seen[case.request_id]
        dead_letter = case.raw is not None
        complete &= _complete(entry, dead_letter)
        outcome = entry.outcome or "(none)"
        if entry.reason and entry.outcome in (
            "rejected",
            "dead-lettered",
            "failed",
            "mismatch",
            "anomaly",
        ):
            outcome = f"{outcome}:{entry.reason}"
        print(
            f"{case.request_id[:8]:<10} {case.label:<17} {outcome:<26}"
            f" {entry.ins or '-':<16} {', '.join(entry.events) or '-'}"
        )
    return complete
