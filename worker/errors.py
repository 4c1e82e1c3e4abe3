"""The worker's one exception hierarchy; each branch is a decision.

::

    InsWorkerError
    ├── ConfigurationError        refuse to start, readiness false, alert
    ├── MessageRejected           dead-letter the delivery with a reason
    ├── RequestRefused            terminal ``rejected`` outcome, no INSi call
    ├── InsiError                 anything on the way to or from INSi
    │   ├── InsiTransient         retry with backoff, then delayed retry
    │   │   ├── InsiTimeout
    │   │   ├── InsiUnreachable
    │   │   ├── InsiHttpError     5xx without a SOAP fault
    │   │   └── InsiTransientFault   siram_40 and alike
    │   ├── InsiPermanent         terminal ``failed`` outcome, no retry
    │   │   ├── InsiProtocolError     reply that is not the contract
    │   │   ├── InsiRequestFault      the request itself was refused
    │   │   ├── InsiConfigurationFault   IDAM, certificate CN: readiness too
    │   │   └── InsiCertificateError     TLS refused; a ConfigurationError
    │   └── CircuitOpen           pause consumption, requeue untouched
    ├── StoreUnavailable          do not ack; pause until the pool is back
    └── BrokerUnavailable         publish not confirmed: keep, try again
        └── Unroutable            no queue took it: topology or binding gone

Messages of these exceptions never carry personal data: they name codes,
field paths and reasons, never names, dates or identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.insi.model import Exchange


class InsWorkerError(Exception):
    """Root of every error the worker raises on purpose."""


class ConfigurationError(InsWorkerError):
    """The installation is wrong; nothing will work until a human acts."""


class MessageRejected(InsWorkerError):
    """A delivery that can never be processed: dead-letter it.

    ``reason`` is a short machine-readable code (``not_json``,
    ``schema_invalid``...), ``detail`` a human sentence free of personal
    data, ``request_id`` the id if it could be read.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.request_id = request_id


class RequestRefused(InsWorkerError):
    """A well-formed request the identity rules forbid sending to INSi."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FaultDetails:
    """What a SOAP 1.2 fault from INSi says, read by namespace."""

    code: str | None
    subcode: str | None
    detail_code: str | None
    severity: str | None
    message_id: str | None
    reason: str | None


class InsiError(InsWorkerError):
    """Something went wrong calling INSi."""

    #: a label for metrics and the audit trail: bounded, never personal
    kind: str = "error"

    #: the SOAP exchange that failed, when one happened, for the audit trail
    exchange: Exchange | None = None


class InsiTransient(InsiError):
    """Worth another try later: the service, not the request, failed."""

    kind = "transient"


class InsiTimeout(InsiTransient):
    """No complete answer within the call's timeout."""

    kind = "timeout"


class InsiUnreachable(InsiTransient):
    """Connection refused, reset, or the TLS session could not start."""

    kind = "unreachable"


class InsiHttpError(InsiTransient):
    """An HTTP error status without a SOAP fault in the body."""

    kind = "http_error"

    def __init__(self, status: int) -> None:
        super().__init__(f"INSi answered HTTP {status} without a fault")
        self.status = status


class InsiPermanent(InsiError):
    """Trying again cannot help: record a terminal outcome."""

    kind = "permanent"


class InsiProtocolError(InsiPermanent):
    """The reply is not what the contract describes."""

    kind = "protocol"


class _FaultMixin:
    fault: FaultDetails

    def _describe(self) -> str:
        f = self.fault
        return (
            f"INSi fault {f.code}/{f.subcode} detail {f.detail_code}"
            f" severity {f.severity}"
        )


class InsiTransientFault(_FaultMixin, InsiTransient):
    """A fault INSi uses for its own back-end trouble."""

    kind = "fault_transient"

    def __init__(self, fault: FaultDetails) -> None:
        self.fault = fault
        super().__init__(self._describe())


class InsiRequestFault(_FaultMixin, InsiPermanent):
    """A fault about the request's content, such as an invalid sex."""

    kind = "fault_request"

    def __init__(self, fault: FaultDetails) -> None:
        self.fault = fault
        super().__init__(self._describe())


class InsiConfigurationFault(_FaultMixin, InsiPermanent):
    """A fault about who is calling: authorisation number, certificate."""

    kind = "fault_configuration"

    def __init__(self, fault: FaultDetails) -> None:
        self.fault = fault
        super().__init__(self._describe())


class InsiCertificateError(InsiPermanent, ConfigurationError):
    """TLS with INSi failed on a certificate, ours or the server's.

    Both a permanent INSi error (no retry: a certificate does not fix
    itself, and retrying every message would be a storm against a traced
    service) and a configuration error (readiness false, alert).
    """

    kind = "certificate"


InsiFault = InsiTransientFault | InsiRequestFault | InsiConfigurationFault


class CircuitOpen(InsiError):
    """The breaker refused the call without trying it."""

    kind = "circuit_open"


class StoreUnavailable(InsWorkerError):
    """PostgreSQL could not be reached or did not answer in time."""


class BrokerUnavailable(InsWorkerError):
    """RabbitMQ did not confirm a publish (closed, nacked, timed out)."""


class Unroutable(BrokerUnavailable):
    """A mandatory publish was returned: no queue is bound for it."""
