"""What a benchmark publishes: requests, and the baseline's canned call.

Every request is about the same public test person (``ADRTROIS``, found
by the simulator with ``CodeCR`` 00) with an ID card checked, so each
one takes exactly one INSi call and ends ``qualified``. Each request has
its own patient reference: requests never wait for each other's
identity row lock.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from worker.insi.contract import Caller, Envelopes, soap12_content_type
from worker.insi.model import TraitsSearch
from worker.settings import Settings

REQUEST_TYPE = "fr.ins.identity.verification.requested.v1"
SOURCE = "urn:example:pas:bench"

TRAITS = {
    "birth_name": "Adrtrois",
    "first_names": ["Toussaint"],
    "sex": "M",
    "birth_date": "1960-01-01",
}
DOCUMENT = {"type": "CN", "checked_at": "2026-12-01"}

#: the same person as the worker sends it, normalised for INSi
SEARCH = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")


@dataclass(frozen=True, slots=True)
class Request:
    """One request to publish."""

    request_id: str
    body: bytes


def make_requests(count: int, tag: str) -> list[Request]:
    """``count`` requests with fresh ids and patient references."""
    out = []
    for index in range(count):
        request_id = str(uuid.uuid4())
        document = {
            "specversion": "1.0",
            "type": REQUEST_TYPE,
            "source": SOURCE,
            "id": request_id,
            "subject": f"ipp/{tag}-{index:07d}",
            "correlationid": f"bench-{index}",
            "data": {"traits": TRAITS, "document": DOCUMENT},
        }
        out.append(Request(request_id, json.dumps(document).encode()))
    return out


@dataclass(frozen=True, slots=True)
class CannedCall:
    """The one SOAP request the baseline posts for every message."""

    body: bytes
    content_type: str


def canned_call() -> CannedCall:
    """A traits search envelope built once, as the worker would build it."""
    caller = Caller.from_settings(Settings(), certificate_ou="INS-BENCH")
    envelopes = Envelopes(caller)
    _message_id, body = envelopes.build(SEARCH)
    return CannedCall(body, soap12_content_type(envelopes.action))
