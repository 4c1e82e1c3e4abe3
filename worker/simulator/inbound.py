"""Reading a traits-search request as INSi would, before answering it.

:func:`read_call` checks what the contract requires of every call (SOAP
1.2 media type with the traits-search action, a well-formed SOAP 1.2
envelope, the four headers, a ``RECSANSVITALE`` body) and raises
:class:`ContractViolation` with the simulator-only fault to send
otherwise. The request is parsed with the project's hardened parser.
Whether the caller may call, and the values of the traits, are the
server's decisions, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from lxml import etree

from worker.insi import xmlsafe
from worker.insi.model import TraitsSearch
from worker.simulator.soap import (
    CTXBAM_NS,
    CTXLPS_NS,
    RECSANS_NS,
    SOAP_MEDIA_TYPE,
    SOAP_NS,
    TRAITS_SEARCH_ACTION,
    WSA_NS,
)
from worker.simulator.soapfaults import FaultSpec, protocol_fault

#: a request is about 2 KB; anything much larger is not a traits search
MAX_REQUEST_BYTES = 65_536

_IDAM = "/".join(
    f"{{{CTXLPS_NS}}}{name}" for name in ("ContexteLPS", "LPS", "IDAM")
)


class ContractViolation(Exception):
    """A request the simulator refuses with ``fault``.

    ``message_id`` is the request's ``wsa:MessageID`` when it could be
    read, so that the fault can echo it.
    """

    def __init__(
        self, fault: FaultSpec, message_id: str | None = None
    ) -> None:
        super().__init__(fault.detail_code)
        self.fault = fault
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class InboundCall:
    """What the server needs of one accepted request.

    ``search.sex`` is as sent, possibly empty or invalid: the server
    answers that with ``insi_24``. ``idam`` is ``None`` when absent.
    """

    message_id: str
    idam: str | None
    search: TraitsSearch


def _violation(
    code: str, detail: str, message_id: str | None = None
) -> ContractViolation:
    return ContractViolation(protocol_fault(code, detail), message_id)


def check_media_type(content_type: str | None) -> None:
    """SOAP 1.2 media type whose ``action`` is the traits search."""
    header = Message()
    header["Content-Type"] = content_type or ""
    if header.get_content_type() != SOAP_MEDIA_TYPE or not content_type:
        raise _violation(
            "simu_media_type", f"Content-Type {SOAP_MEDIA_TYPE} attendu."
        )
    if header.get_param("action") != TRAITS_SEARCH_ACTION:
        raise _violation(
            "simu_action", "Action de la recherche par traits attendue."
        )


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip()


def read_call(content_type: str | None, body: bytes) -> InboundCall:
    """Check one request and return what it asks, or raise a violation."""
    check_media_type(content_type)

    try:
        root = xmlsafe.parse(body, max_bytes=MAX_REQUEST_BYTES)
    except xmlsafe.XmlRefused as exc:
        raise _violation("simu_xml", f"XML refusé ({exc.reason}).") from None
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise _violation("simu_envelope", "Enveloppe SOAP 1.2 attendue.")
    header = root.find(f"{{{SOAP_NS}}}Header")
    body_element = root.find(f"{{{SOAP_NS}}}Body")
    if header is None or body_element is None:
        raise _violation("simu_envelope", "Header et Body attendus.")

    message_id = _headers(header)
    idam = _text(header.find(_IDAM))
    search = _search(body_element, message_id)

    return InboundCall(message_id=message_id, idam=idam, search=search)


def _headers(header: etree._Element) -> str:
    # the message id first, so that the other faults can echo it
    message_id = _text(header.find(f"{{{WSA_NS}}}MessageID")) or None
    required = (
        (CTXLPS_NS, "ContexteLPS"),
        (CTXBAM_NS, "ContexteBAM"),
        (WSA_NS, "Action"),
        (WSA_NS, "MessageID"),
    )
    for namespace, name in required:
        if header.find(f"{{{namespace}}}{name}") is None:
            raise _violation(
                "simu_header", f"En-tête {name} absent.", message_id
            )
    if message_id is None:
        raise _violation("simu_header", "MessageID vide.")

    action = _text(header.find(f"{{{WSA_NS}}}Action"))
    if action != TRAITS_SEARCH_ACTION:
        raise _violation(
            "simu_action", "wsa:Action de la recherche par traits attendu.",
            message_id,
        )
    return message_id


def _search(body: etree._Element, message_id: str) -> TraitsSearch:
    request = body.find(f"{{{RECSANS_NS}}}RECSANSVITALE")
    if request is None:
        raise _violation(
            "simu_body", "RECSANSVITALE attendu.", message_id
        )

    def field(name: str) -> str | None:
        return _text(request.find(f"{{{RECSANS_NS}}}{name}"))

    birth_name = field("NomNaissance")
    birth_date = field("DateNaissance")
    if not birth_name or not birth_date:
        raise _violation(
            "simu_body", "NomNaissance et DateNaissance attendus.",
            message_id,
        )
    first_names = tuple(
        text
        for element in request.findall(f"{{{RECSANS_NS}}}Prenom")
        if (text := _text(element))
    )
    return TraitsSearch(
        birth_name=birth_name,
        first_names=first_names,
        sex=field("Sexe") or "",
        birth_date=birth_date,
        birth_place=field("LieuNaissance") or None,
    )
