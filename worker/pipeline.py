"""What happens to one delivery, from its body to its stored outcome.

::

    body ─► parse (schema) ─► inbox claim ─► identity checks ─► INSi
        │            │                 │              │          │
        │      dead-letter         ack again     rejected    strategy
        │      (+ rejected          (done)       outcome    ─► decision
        │       if id read)                                  ─► outcome
        ▼
    the consumer acks only what this module returns as ACK, and only
    after the outcome (or the dead letter, or the delayed retry) is safe.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg

from worker import logs, metrics
from worker.broker import Outgoing, Publisher
from worker.deadline import Deadline
from worker.domain.request import VerificationRequest
from worker.errors import (
    CircuitOpen,
    InsiError,
    InsiPermanent,
    InsiTransient,
    MessageRejected,
    RequestRefused,
)
from worker.gateway import InsiGateway
from worker.insi.model import Exchange
from worker.intake import parse_request
from worker.outcomes import OutcomeRecorder
from worker.settings import Settings
from worker.store import inbox
from worker.topology import retry_tiers

logger = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-ins-attempt"
REASON_HEADER = "x-ins-reason"
DETAIL_HEADER = "x-ins-detail"


class Disposition(StrEnum):
    """What the consumer does with the delivery afterwards."""

    ACK = "ack"
    REQUEUE = "requeue"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The parts of an AMQP delivery the pipeline reads."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    routing_key: str = ""
    message_id: str | None = None
    redelivered: bool = False

    @property
    def attempt(self) -> int:
        """Delayed retries already made for this request (0 at first)."""
        value = self.headers.get(ATTEMPT_HEADER, 0)
        return value if isinstance(value, int) and value >= 0 else 0


@dataclass(slots=True)
class MessageLog:
    """The fields every log line about one message carries."""

    request_id: str
    attempt: int
    queue: str
    correlation_id: str | None = None


class Pipeline:
    """Turns deliveries into outcomes; one instance per process."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool[Any],
        gateway: InsiGateway,
        publisher: Publisher,
        recorder: OutcomeRecorder,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._gateway = gateway
        self._publisher = publisher
        self._recorder = recorder
        self._tiers = retry_tiers(settings)

    async def handle(self, delivery: Delivery) -> Disposition:
        """Process one delivery; raise only for StoreUnavailable et al."""
        deadline = Deadline(self._settings.message_budget_s)
        metrics.messages_consumed.inc()

        try:
            request = parse_request(
                delivery.body, self._settings.max_body_bytes
            )
        except MessageRejected as exc:
            return await self._reject_message(delivery, exc)

        log = MessageLog(
            request.request_id,
            delivery.attempt,
            self._settings.requests_queue,
            request.correlation_id,
        )
        claim = await inbox.claim(
            self._pool,
            request_id=request.request_id,
            source=request.source,
            patient_ref=request.patient_ref,
            correlation_id=request.correlation_id,
            digest=inbox.body_digest(delivery.body),
        )
        if claim.status == "done":
            metrics.redeliveries_acked.inc()
            logger.info(
                "already_done request_id=%s attempt=%d queue=%s outcome=%s",
                log.request_id,
                log.attempt,
                log.queue,
                claim.outcome,
            )
            return Disposition.ACK
        if claim.status == "conflict":
            return await self._dead_letter(
                delivery,
                MessageRejected(
                    "request_id_reused",
                    "a different request already used this id",
                    request.request_id,
                ),
            )

        # Lines logged below this point (the INSi client's included) carry
        # the message's ids; the client itself knows nothing of requests.
        with logs.bind(
            request_id=request.request_id,
            correlation_id=request.correlation_id or "-",
            delivery=claim.deliveries,
        ):
            return await self._process(
                request, delivery, claim.deliveries, deadline, log
            )

    async def _process(
        self,
        request: VerificationRequest,
        delivery: Delivery,
        deliveries: int,
        deadline: Deadline,
        log: MessageLog,
    ) -> Disposition:
        exchanges: list[Exchange] = []
        started = time.perf_counter()
        try:
            prepared = self._recorder.prepare(request)
            result = await self._recorder.search(
                prepared, self._gateway.caller(deadline, exchanges, log)
            )
        except RequestRefused as exc:
            await self._recorder.refused(request, exc, deliveries)
            self._log_outcome(log, "rejected", exc.reason)
            return Disposition.ACK
        except CircuitOpen:
            logger.warning(
                "breaker_open_requeue request_id=%s attempt=%d queue=%s",
                log.request_id,
                log.attempt,
                log.queue,
            )
            await self._keep_exchanges(
                request, deliveries, exchanges, "paused"
            )
            return Disposition.REQUEUE
        except InsiTransient as exc:
            return await self._retry_later(
                request, delivery, deliveries, exchanges, exc, log
            )
        except InsiPermanent as exc:
            await self._recorder.failed(
                request, deliveries, exc.kind, _fault_code(exc), exchanges
            )
            self._log_outcome(log, "failed", exc.kind)
            return Disposition.ACK

        outcome = await self._recorder.decided(
            request, result, deliveries, exchanges
        )
        insi_s = sum(x.duration_s for x in exchanges)
        metrics.message_overhead.observe(
            max(0.0, time.perf_counter() - started - insi_s)
        )
        self._log_outcome(log, outcome, None)
        return Disposition.ACK

    async def _retry_later(
        self,
        request: VerificationRequest,
        delivery: Delivery,
        deliveries: int,
        exchanges: list[Exchange],
        error: InsiError,
        log: MessageLog,
    ) -> Disposition:
        attempt = delivery.attempt
        if attempt >= len(self._tiers):
            await self._recorder.failed(
                request,
                deliveries,
                "retries_exhausted",
                _fault_code(error),
                exchanges,
            )
            self._log_outcome(log, "failed", "retries_exhausted")
            return Disposition.ACK

        tier = self._tiers[attempt]
        await self._keep_exchanges(
            request,
            deliveries,
            exchanges,
            "delayed_retry",
            {"tier": tier.index + 1, "kind": error.kind},
        )
        headers = dict(delivery.headers)
        headers[ATTEMPT_HEADER] = attempt + 1
        await self._publisher.publish(
            Outgoing(
                exchange="",
                routing_key=tier.queue,
                body=delivery.body,
                message_id=delivery.message_id or request.request_id,
                headers=_forwardable(headers),
            )
        )
        metrics.delayed_retries.labels(tier=str(tier.index + 1)).inc()
        logger.warning(
            "delayed_retry request_id=%s attempt=%d queue=%s kind=%s"
            " delay_s=%g",
            log.request_id,
            log.attempt,
            log.queue,
            error.kind,
            tier.delay_s,
        )
        return Disposition.ACK

    async def _keep_exchanges(
        self,
        request: VerificationRequest,
        deliveries: int,
        exchanges: list[Exchange],
        step: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await inbox.record_step(
            self._pool,
            request_id=request.request_id,
            delivery=deliveries,
            step=step,
            detail=detail or {},
            exchanges=exchanges,
            certificate=self._recorder.certificate,
            correlation_id=request.correlation_id,
        )

    async def _reject_message(
        self, delivery: Delivery, error: MessageRejected
    ) -> Disposition:
        if error.request_id is not None:
            await self._recorder.rejected_message(
                error.request_id,
                error.reason,
                error.detail,
                inbox.body_digest(delivery.body),
            )
            metrics.outcomes.labels(outcome="rejected").inc()
        return await self._dead_letter(delivery, error)

    async def _dead_letter(
        self, delivery: Delivery, error: MessageRejected
    ) -> Disposition:
        headers = dict(delivery.headers)
        headers[REASON_HEADER] = error.reason
        headers[DETAIL_HEADER] = error.detail[:512]
        await self._publisher.publish(
            Outgoing(
                exchange=self._settings.dead_letter_exchange,
                routing_key=delivery.routing_key
                or self._settings.requests_routing_key,
                body=delivery.body,
                message_id=delivery.message_id,
                headers=_forwardable(headers),
                content_type="application/octet-stream",
            )
        )
        metrics.dead_letters.labels(reason=error.reason).inc()
        logger.warning(
            "dead_lettered request_id=%s attempt=%d queue=%s reason=%s",
            error.request_id or "-",
            delivery.attempt,
            self._settings.requests_queue,
            error.reason,
        )
        return Disposition.ACK

    @staticmethod
    def _log_outcome(
        log: MessageLog, outcome: str, reason: str | None
    ) -> None:
        metrics.outcomes.labels(outcome=outcome).inc()
        logger.info(
            "outcome request_id=%s attempt=%d queue=%s correlation_id=%s"
            " outcome=%s reason=%s",
            log.request_id,
            log.attempt,
            log.queue,
            log.correlation_id or "-",
            outcome,
            reason or "-",
        )


def _fault_code(error: InsiError) -> str | None:
    fault = getattr(error, "fault", None)
    if fault is None:
        return None
    return str(fault.detail_code or fault.subcode or fault.code)


def _forwardable(headers: dict[str, Any]) -> dict[str, Any]:
    # The broker's own bookkeeping headers must not be forged onwards.
    return {
        k: v
        for k, v in headers.items()
        if not k.startswith("x-death")
        and not k.startswith("x-first-death")
        and not k.startswith("x-last-death")
        and k != "x-delivery-count"
    }


def now() -> datetime:
    """The current UTC time (one place to read the clock)."""
    return datetime.now(UTC)
