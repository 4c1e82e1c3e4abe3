"""Identity events as CloudEvents 1.0 in structured JSON mode.

An event's id is derived from the request id and the event type, so the
same outcome always carries the same id: consumers drop repeats on
``(source, id)``. The ``subject`` is the requesting system's patient
reference; ``requester`` (an extension) names that system, since two
systems may use the same patient numbers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TYPE_PREFIX = "fr.ins.identity."
DATASCHEMA = "urn:ins-worker:schema:identity-event:v1"
CONTENT_TYPE = "application/cloudevents+json"

#: every event type the worker publishes (suffix after ``fr.ins.identity.``)
EVENT_TYPES = (
    "qualified",
    "retrieved",
    "not_found",
    "ambiguous",
    "mismatch",
    "anomaly",
    "ins_changed",
    "unqualified",
    "rejected",
    "failed",
)

_NAMESPACE = uuid.UUID("5d0f3a8e-61b4-4b8e-9a0c-3f1f6a2e7c11")


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asked, and about which of their patients."""

    request_id: str
    system: str | None
    patient_ref: str | None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An event ready for the outbox: its id, routing key and JSON bytes."""

    event_id: str
    event_type: str
    routing_key: str
    body: bytes


def event_id(request_id: str, kind: str) -> str:
    """The stable id of the ``kind`` event of one request."""
    return str(uuid.uuid5(_NAMESPACE, f"{request_id}/{kind}"))


def build(
    kind: str,
    requester: Requester,
    data: dict[str, Any],
    *,
    source: str,
    time: datetime | None = None,
) -> OutboxEvent:
    """One CloudEvent of type ``fr.ins.identity.<kind>``."""
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind}")
    stamp = (time or datetime.now(UTC)).astimezone(UTC)
    identifier = event_id(requester.request_id, kind)
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "type": TYPE_PREFIX + kind,
        "source": source,
        "id": identifier,
        "time": stamp.isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"
        ),
        "datacontenttype": "application/json",
        "dataschema": DATASCHEMA,
    }
    if requester.patient_ref is not None:
        envelope["subject"] = requester.patient_ref
    if requester.system is not None:
        envelope["requester"] = requester.system
    if requester.correlation_id is not None:
        envelope["correlationid"] = requester.correlation_id
    envelope["data"] = {"request_id": requester.request_id, **data}
    body = json.dumps(
        envelope, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")
    return OutboxEvent(identifier, kind, f"identity.{kind}", body)
