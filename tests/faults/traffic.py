"""The requests of a run: what is published, and what each must become.

Valid requests go over the Cnam's public test identities (never real
patients); each patient reference always carries the same traits, so that
several requests about one patient move its identity consistently. A
small share is invalid on purpose: bodies that are not JSON (dead letter
only) and schema-invalid bodies whose id is readable (dead letter plus a
``rejected`` outcome), and a few are refused by the identity rules
(``douteuse``: a ``rejected`` outcome, no dead letter).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aio_pika

logger = logging.getLogger(__name__)

CN = {"type": "CN", "checked_at": "2026-12-01"}

#: (birth name, first names, sex, birth date, birth place or None)
IDENTITIES: tuple[tuple[str, list[str], str, str, str | None], ...] = (
    ("Adrtrois", ["Toussaint"], "M", "1960-01-01", None),
    ("Ecetinsi", ["Pierre-Alain"], "M", "2009-07-14", None),
    ("Corse", ["Anthony"], "M", "1980-03-02", None),
    ("De Vinci", ["Leonardo"], "M", "2014-02-01", None),
    ("De Vinci", ["Leonardo"], "M", "2014-02-01", "63220"),
    ("Houilles", ["Pierre"], "M", "1993-01-27", None),
    ("Tchitchi", ["Ola", "Catarina"], "F", "1936-06-21", None),
    ("Adrun", ["Zoé"], "F", "1975-12-31", None),
    ("Nessi", ["Michelangelo", "Anthony"], "M", "2010-08-07", None),
)

#: how a published message is expected to end
VALID = "valid"
REFUSED = "refused"
NOT_JSON = "not_json"
SCHEMA_INVALID = "schema_invalid"


@dataclass(frozen=True, slots=True)
class Request:
    """One message of the run and what it must turn into."""

    message_id: str
    kind: str
    body: bytes

    @property
    def has_outcome(self) -> bool:
        """Whether a ``requests`` row with an outcome must exist."""
        return self.kind != NOT_JSON

    @property
    def dead_letter(self) -> bool:
        """Whether the message must end in the dead-letter queue."""
        return self.kind in (NOT_JSON, SCHEMA_INVALID)


def make_requests(
    count: int, seed: int, invalid_share: float, source: str
) -> list[Request]:
    """``count`` requests, reproducibly from ``seed``."""
    rng = random.Random(seed)
    patients = max(8, count // 20)
    out: list[Request] = []
    for _ in range(count):
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        draw = rng.random()
        if draw < invalid_share / 2:
            body = b"\x00not a request " + request_id.encode()
            out.append(Request(request_id, NOT_JSON, body))
            continue
        patient = rng.randrange(patients)
        document = _document(request_id, patient, source)
        if draw < invalid_share:
            document["data"]["traits"]["birth_date"] = "01/01/1960"
            kind = SCHEMA_INVALID
        elif draw < invalid_share + 0.01:
            document["data"]["attributes"] = ["douteuse"]
            kind = REFUSED
        else:
            kind = VALID
        out.append(Request(request_id, kind, json.dumps(document).encode()))
    return out


def _document(request_id: str, patient: int, source: str) -> dict[str, Any]:
    name, first, sex, born, place = IDENTITIES[patient % len(IDENTITIES)]
    traits: dict[str, Any] = {
        "birth_name": name,
        "first_names": first,
        "sex": sex,
        "birth_date": born,
    }
    if place is not None:
        traits["birth_place"] = place
    return {
        "specversion": "1.0",
        "type": "fr.ins.identity.verification.requested.v1",
        "source": source,
        "id": request_id,
        "subject": f"ipp/{patient:06d}",
        "correlationid": f"faults-{request_id[:8]}",
        "data": {"traits": traits, "document": CN},
    }


@dataclass(slots=True)
class Publishing:
    """What the publisher did: accepted ids, retries, when it ended."""

    accepted: set[str] = field(default_factory=set)
    retried: int = 0
    reconnects: int = 0
    finished_at: float | None = None


async def publish_all(
    url: str,
    exchange_name: str,
    routing_key: str,
    requests: list[Request],
    duration_s: float,
    state: Publishing,
    deadline_s: float,
) -> None:
    """Publish every request over ``duration_s``, with confirms.

    A request is accepted once the broker confirmed it. Anything not
    confirmed (a broker restart, a closed connection) is published again
    with the same id and body, which the worker's inbox makes harmless.
    """
    started = time.monotonic()
    pending = list(requests)
    window = 50
    connection: aio_pika.abc.AbstractConnection | None = None
    while pending and time.monotonic() - started < deadline_s:
        try:
            if connection is None or connection.is_closed:
                connection = await aio_pika.connect(
                    url,
                    timeout=5,
                    client_properties={"connection_name": "ins-faults"},
                )
                state.reconnects += 1
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(exchange_name)
            while pending:
                done = len(requests) - len(pending)
                due = started + duration_s * done / len(requests)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                batch = pending[:window]
                await asyncio.gather(
                    *(_publish(exchange, routing_key, r) for r in batch)
                )
                state.accepted.update(r.message_id for r in batch)
                del pending[: len(batch)]
        except Exception as exc:  # any broker trouble: publish again
            state.retried += 1
            logger.warning("publish_retry kind=%s", type(exc).__name__)
            if connection is not None:
                await _close_quietly(connection)
            connection = None
            await asyncio.sleep(1.0)
    state.finished_at = time.monotonic()
    if connection is not None:
        await _close_quietly(connection)


async def _publish(
    exchange: aio_pika.abc.AbstractExchange, key: str, request: Request
) -> None:
    await exchange.publish(
        aio_pika.Message(
            request.body,
            message_id=request.message_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=key,
        mandatory=True,
        timeout=10,
    )


async def _close_quietly(connection: aio_pika.abc.AbstractConnection) -> None:
    try:
        await asyncio.wait_for(connection.close(), 5)
    except Exception:  # the connection is being thrown away
        logger.debug("publish_connection_close_failed")
