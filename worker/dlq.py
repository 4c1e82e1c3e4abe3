"""The dead-letter queue for an operator: ``ins-worker dlq list|replay``.

Both commands take a snapshot of the queue with a manual-ack consumer:
every ready message is delivered and held unacknowledged (up to
``scan_max``), then the consumer is cancelled, so nothing else arrives
while the held messages are examined. ``list`` only reads them;
``replay`` republishes the matching ones to the requests exchange and
acks each dead letter only once the broker confirmed its republish. At
the end every message still held is returned with ``nack(requeue=True)``
in delivery order.

What that means on the broker:

- nothing is ever removed but a confirmed replay; a crash or a lost
  connection returns every held message too (the broker requeues what
  a closed channel did not ack);
- a quorum queue puts a returned message at its tail and counts the
  return in ``x-delivery-count``. Returning the whole snapshot in order
  keeps the queue's order (only dead letters arriving meanwhile end up
  ahead of it); a snapshot cut short by ``scan_max`` moves the examined
  part behind the rest.

Bodies are never printed unless asked (``show_body``): a request carries
a patient's traits. The request id shown is the body's ``id``, a UUID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from worker.broker import CONNECTION_ERRORS, open_connection
from worker.errors import BrokerUnavailable
from worker.intake import readable_request_id
from worker.pipeline import ATTEMPT_HEADER, DETAIL_HEADER, REASON_HEADER
from worker.settings import Settings

logger = logging.getLogger(__name__)

#: set on a replayed message: the replay run and when it happened
REPLAY_HEADER = "x-ins-replay"
REPLAYED_AT_HEADER = "x-ins-replayed-at"

#: AMQP's prefetch count is a 16-bit field
MAX_SCAN = 65535
DEFAULT_SCAN = 10000

#: no delivery for this long ends the snapshot early
IDLE_S = 3.0
_TIMEOUT_S = 10.0

_DEATH_PREFIXES = ("x-death", "x-first-death-", "x-last-death-")

#: a republish the broker did not confirm
_NOT_CONFIRMED: tuple[type[Exception], ...] = (
    aio_pika.exceptions.DeliveryError,
    *CONNECTION_ERRORS,
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What an operator may see of one dead letter (never its body)."""

    position: int
    message_id: str | None
    request_id: str | None
    reason: str | None
    detail: str | None
    death_reason: str | None
    death_count: int | None
    death_queue: str | None
    delivery_count: int | None
    attempt: int | None
    size: int
    body: bytes = field(repr=False)

    def as_dict(self, show_body: bool = False) -> dict[str, Any]:
        """JSON-ready fields; the body only with ``show_body``."""
        out: dict[str, Any] = {
            "position": self.position,
            "message_id": self.message_id,
            "request_id": self.request_id,
            "reason": self.reason,
            "detail": self.detail,
            "death_reason": self.death_reason,
            "death_count": self.death_count,
            "death_queue": self.death_queue,
            "delivery_count": self.delivery_count,
            "attempt": self.attempt,
            "size": self.size,
        }
        if show_body:
            out["body"] = self.body.decode("utf-8", errors="backslashreplace")
        return out


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command acts on."""

    reason: str | None = None
    request_id: str | None = None
    limit: int | None = None

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` passes the filters (the limit aside)."""
        if self.reason is not None and self.reason not in (
            letter.reason,
            letter.death_reason,
        ):
            return False
        if self.request_id is not None:
            wanted = self.request_id.strip().lower()
            return wanted in (
                letter.request_id,
                (letter.message_id or "").lower(),
            )
        return True


@dataclass(slots=True)
class Scan:
    """The result of a command: what the queue held, what was done."""

    queue: str
    ready: int
    examined: int = 0
    selected: list[DeadLetter] = field(default_factory=list)
    replayed: int = 0
    dry_run: bool = False
    error: str | None = None

    def as_dict(self, show_body: bool = False) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "queue": self.queue,
            "ready": self.ready,
            "examined": self.examined,
            "selected": [d.as_dict(show_body) for d in self.selected],
            "replayed": self.replayed,
            "dry_run": self.dry_run,
            "error": self.error,
        }


def describe(position: int, message: AbstractIncomingMessage) -> DeadLetter:
    """The operator's view of one dead letter."""
    headers = dict(message.headers or {})
    death = _first_death(headers.get("x-death"))
    reason = _text(headers.get(REASON_HEADER))
    death_reason = _text(death.get("reason")) or _text(
        headers.get("x-first-death-reason")
    )
    return DeadLetter(
        position=position,
        message_id=message.message_id,
        request_id=_request_id(message.body),
        reason=reason or death_reason,
        detail=_text(headers.get(DETAIL_HEADER)),
        death_reason=death_reason,
        death_count=_int(death.get("count")),
        death_queue=_text(death.get("queue"))
        or _text(headers.get("x-first-death-queue")),
        delivery_count=_int(headers.get("x-delivery-count")),
        attempt=_int(headers.get(ATTEMPT_HEADER)),
        size=len(message.body),
        body=message.body,
    )


def replay_headers(
    headers: Mapping[str, Any], run_id: str, now: datetime
) -> dict[str, Any]:
    """The headers a replayed request goes back with.

    The dead-letter reason and detail and the broker's death records go
    (the worker judges the request afresh), the delayed-retry attempt
    count is reset by removing it, and the replay is stamped.
    """
    kept = {
        k: v
        for k, v in headers.items()
        if k not in (REASON_HEADER, DETAIL_HEADER, ATTEMPT_HEADER)
        and k != "x-delivery-count"
        and not k.startswith(_DEATH_PREFIXES)
    }
    kept[REPLAY_HEADER] = run_id
    kept[REPLAYED_AT_HEADER] = now.isoformat(timespec="seconds")
    return kept


async def list_dead_letters(
    settings: Settings,
    selection: Selection,
    *,
    scan_max: int = DEFAULT_SCAN,
) -> Scan:
    """The dead letters ``selection`` designates; the queue is unchanged."""
    async with _session(settings, scan_max, publishing=False) as session:
        scan = session.scan
        for n, message in enumerate(session.held, 1):
            letter = describe(n, message)
            if selection.matches(letter) and not _full(scan, selection):
                scan.selected.append(letter)
    return scan


async def replay_dead_letters(
    settings: Settings,
    selection: Selection,
    *,
    dry_run: bool = False,
    scan_max: int = DEFAULT_SCAN,
) -> Scan:
    """Send the selected dead letters back to the requests exchange.

    Stops at the first republish the broker does not confirm: that
    message, and every one after it, stays a dead letter; ``error``
    says why.
    """
    run_id = str(uuid.uuid4())
    async with _session(settings, scan_max, publishing=not dry_run) as s:
        scan = s.scan
        scan.dry_run = dry_run
        for n, message in enumerate(s.held, 1):
            letter = describe(n, message)
            if not selection.matches(letter) or _full(scan, selection):
                continue
            scan.selected.append(letter)
            if s.exchange is None:
                continue
            scan.error = await _replay_one(
                s.exchange, settings, message, run_id
            )
            if scan.error is not None:
                break
            scan.replayed += 1
    logger.info(
        "dlq_replay queue=%s examined=%d replayed=%d dry_run=%s",
        scan.queue,
        scan.examined,
        scan.replayed,
        dry_run,
    )
    return scan


def _full(scan: Scan, selection: Selection) -> bool:
    return (
        selection.limit is not None and len(scan.selected) >= selection.limit
    )


async def _replay_one(
    exchange: AbstractExchange,
    settings: Settings,
    message: AbstractIncomingMessage,
    run_id: str,
) -> str | None:
    """Republish, then ack the dead letter; the error if not confirmed."""
    outgoing = aio_pika.Message(
        message.body,
        headers=replay_headers(
            dict(message.headers or {}), run_id, datetime.now(UTC)
        ),
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        app_id=message.app_id,
        timestamp=message.timestamp,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    try:
        await exchange.publish(
            outgoing,
            routing_key=settings.requests_routing_key,
            mandatory=True,
            timeout=_TIMEOUT_S,
        )
    except aio_pika.exceptions.PublishError:
        return "unroutable: no queue is bound for the requests"
    except _NOT_CONFIRMED as exc:
        return f"republish not confirmed ({type(exc).__name__})"

    # Acked only now: a crash before this line leaves the dead letter
    # in place, and the inbox recognises the request if it comes twice.
    try:
        await message.ack()
    except CONNECTION_ERRORS as exc:
        name = type(exc).__name__
        return f"replayed, but its dead letter was not acked ({name})"
    return None


@dataclass(slots=True)
class _Session:
    """One connection: the held snapshot and, to replay, a confirm channel."""

    scan: Scan
    held: list[AbstractIncomingMessage]
    exchange: AbstractExchange | None


@contextlib.asynccontextmanager
async def _session(
    settings: Settings, scan_max: int, *, publishing: bool
) -> AsyncIterator[_Session]:
    if not 1 <= scan_max <= MAX_SCAN:
        raise ValueError(f"scan_max must be between 1 and {MAX_SCAN}")
    connection = await open_connection(settings.amqp_url, "dlq")
    try:
        channel, queue, exchange = await _open(
            connection, settings, publishing
        )
        ready = int(queue.declaration_result.message_count or 0)
        held: list[AbstractIncomingMessage] = []
        try:
            if ready:
                held = await _take(channel, queue, min(ready, scan_max))
            scan = Scan(settings.dead_letter_queue, ready, len(held))
            yield _Session(scan, held, exchange)
        finally:
            await _release(held)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), _TIMEOUT_S)


async def _open(
    connection: AbstractConnection, settings: Settings, publishing: bool
) -> tuple[AbstractChannel, AbstractQueue, AbstractExchange | None]:
    # Everything is looked up before a single message is taken.
    what = f"dead-letter queue {settings.dead_letter_queue}"
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            settings.dead_letter_queue, passive=True
        )
        if not publishing:
            return channel, queue, None
        what = f"requests exchange {settings.requests_exchange}"
        confirming = await connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        exchange = await confirming.get_exchange(
            settings.requests_exchange, ensure=True
        )
    except CONNECTION_ERRORS as exc:
        raise BrokerUnavailable(
            f"{what}: missing or not reachable ({type(exc).__name__})"
        ) from exc
    return channel, queue, exchange


async def _take(
    channel: AbstractChannel,
    queue: AbstractQueue,
    count: int,
) -> list[AbstractIncomingMessage]:
    arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def hold(message: AbstractIncomingMessage) -> None:
        await arrived.put(message)

    # Holding `count` unacked messages, the broker sends no more.
    await channel.set_qos(prefetch_count=count)
    tag = await queue.consume(hold, no_ack=False)
    held: list[AbstractIncomingMessage] = []
    try:
        while len(held) < count:
            try:
                held.append(await asyncio.wait_for(arrived.get(), IDLE_S))
            except TimeoutError:
                break
    finally:
        await queue.cancel(tag, timeout=_TIMEOUT_S)
        # Deliveries already on their way when the cancel went out.
        while not arrived.empty():
            held.append(arrived.get_nowait())
    held.sort(key=lambda m: m.delivery_tag or 0)
    return held


async def _release(held: list[AbstractIncomingMessage]) -> None:
    for message in held:
        if message.processed:
            continue
        try:
            await message.nack(requeue=True)
        except CONNECTION_ERRORS:
            # The broker requeues what a closed channel left unacked.
            logger.warning("dlq_release_interrupted")
            return


def _first_death(value: Any) -> Mapping[str, Any]:
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return value[0]
    return {}


def _request_id(body: bytes) -> str | None:
    try:
        return readable_request_id(json.loads(body))
    except (UnicodeDecodeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    return value if isinstance(value, int) else None
