"""One INSi call, made and recorded: envelope, POST, reply, `Exchange`.

`InsiClient` neither retries nor breaks circuits: those wrap it. What it
guarantees is that every call that reached the point of sending leaves
an `Exchange` for the audit trail, returned on success and attached to
the raised exception (``exc.exchange``) on failure.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from worker.errors import InsiError
from worker.insi.contract import Envelopes
from worker.insi.model import Exchange, Operation, TraitsSearch
from worker.insi.reply import parse_reply
from worker.insi.transport import InsiTransport

logger = logging.getLogger(__name__)


def _fault_fields(exc: InsiError, exchange: Exchange) -> None:
    fault = getattr(exc, "fault", None)
    if fault is None:
        return

    parts = [p for p in (fault.subcode, fault.detail_code) if p]
    exchange.fault_code = "/".join(parts) or fault.code
    for name in ("code", "subcode", "detail_code", "severity"):
        value = getattr(fault, name)
        if value is not None:
            exchange.extra[f"fault_{name}"] = value


class InsiClient:
    """Traits searches against one INSi endpoint."""

    def __init__(
        self, envelopes: Envelopes, transport: InsiTransport, url: str
    ) -> None:
        self.envelopes = envelopes
        self.transport = transport
        self.url = url

    async def search(self, search: TraitsSearch) -> Exchange:
        """Make one ``rechercherInsAvecTraitsIdentite`` call.

        Returns the `Exchange` with its ``result`` (00, 01 or 02 alike);
        raises the typed `InsiError` with ``.exchange`` set otherwise.
        """
        started_at = datetime.now(UTC)
        message_id, request_xml = self.envelopes.build(search, now=started_at)
        exchange = Exchange(
            operation=Operation.TRAITS_SEARCH,
            search=search,
            message_id=message_id,
            started_at=started_at,
            request_xml=request_xml,
        )

        clock = time.perf_counter()
        try:
            status, body = await self.transport.post(
                self.url, request_xml, self.envelopes.action
            )
            exchange.http_status = status
            exchange.response_xml = body
            exchange.result = parse_reply(body, status)
        except InsiError as exc:
            exchange.duration_s = time.perf_counter() - clock
            exchange.error_kind = exc.kind
            _fault_fields(exc, exchange)
            exc.exchange = exchange
            self._log(exchange, exc.kind)
            raise

        exchange.duration_s = time.perf_counter() - clock
        self._log(exchange, exchange.result.cr_code)
        return exchange

    def _log(self, exchange: Exchange, outcome: str) -> None:
        # Identifiers here are the call's own UUID and codes: no traits.
        level = logging.INFO if exchange.result else logging.WARNING
        logger.log(
            level,
            "insi_call operation=%s message_id=%s status=%s result=%s "
            "fault=%s duration_ms=%.0f",
            exchange.operation.value,
            exchange.message_id,
            exchange.http_status,
            outcome,
            exchange.fault_code,
            exchange.duration_s * 1000,
        )

    async def close(self) -> None:
        """Close the transport's connections."""
        await self.transport.close()
