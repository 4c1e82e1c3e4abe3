"""Reading an INSi reply: a ``RESULTAT``, or a SOAP 1.2 fault, classified.

Replies are read with lxml, by namespace and local name, never by
prefix, and never against the schema: the live service and the CNDA's
samples differ (``env:Body`` or ``S:Body``, ``TIQ/Prenom`` absent or
present, ``DateDeb``/``DateFin`` before or after ``IdIndividu``), some
history entries repeat the active INS or carry inverted dates, and
faults use a severity (``fatal``) outside the published enumeration.
All of those parse. What the contract does not describe (no SOAP 1.2
envelope, no ``RESULTAT``, no ``CodeCR``, an unknown ``CodeCR``...)
raises `worker.errors.InsiProtocolError`.
"""

from __future__ import annotations

from lxml import etree

from worker.errors import (
    FaultDetails,
    InsiConfigurationFault,
    InsiHttpError,
    InsiProtocolError,
    InsiRequestFault,
    InsiTransientFault,
)
from worker.insi import xmlsafe
from worker.insi.model import CodeCR, ReturnedIns, ReturnedTraits, SearchResult

SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
RESULTAT_NS = "http://www.cnamts.fr/INSiResultat"
SIRAM_NS = "urn:siram"

_ENVELOPE = f"{{{SOAP12_NS}}}Envelope"
_BODY = f"{{{SOAP12_NS}}}Body"
_FAULT = f"{{{SOAP12_NS}}}Fault"
_RESULTAT = f"{{{RESULTAT_NS}}}RESULTAT"
_ERREUR = f"{{{SIRAM_NS}}}Erreur"

_CR_CODES = frozenset(code.value for code in CodeCR)

#: statuses that say "try later" even without a SOAP body
_TRANSIENT_STATUSES = frozenset({408, 429})

# Codes are compared in lower case: INSi writes DESIR_560 and desir_550.
_CONFIGURATION_CODES = frozenset({"siram_100", "desir_550", "desir_560"})
_TRANSIENT_CODES = frozenset({"siram_40", "insi_102", "desir_1020"})
_REQUEST_CODES = frozenset({"insi_24"})


def _qname_local(value: str | None) -> str | None:
    # "soap:siram_100" -> "siram_100", "S:Receiver" -> "Receiver"
    if value is None:
        return None
    local = value.strip().rpartition(":")[2]
    return local or None


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    text = element.text.strip()
    return text or None


class _Children:
    """The element children of one node, by local name, in one namespace."""

    def __init__(self, node: etree._Element, namespace: str) -> None:
        self._path = etree.QName(node).localname
        self._by_name: dict[str, list[etree._Element]] = {}
        prefix = f"{{{namespace}}}"
        for child in node:
            tag = child.tag
            if isinstance(tag, str) and tag.startswith(prefix):
                name = tag[len(prefix):]
                self._by_name.setdefault(name, []).append(child)

    def all(self, name: str) -> list[etree._Element]:
        return self._by_name.get(name, [])

    def one(self, name: str) -> etree._Element | None:
        found = self.all(name)
        if len(found) > 1:
            raise InsiProtocolError(f"{self._path}/{name} repeated")
        return found[0] if found else None

    def required(self, name: str) -> etree._Element:
        found = self.one(name)
        if found is None:
            raise InsiProtocolError(f"{self._path}/{name} missing")
        return found

    def text(self, name: str) -> str | None:
        return _text(self.one(name))

    def required_text(self, name: str) -> str:
        text = _text(self.required(name))
        if text is None:
            raise InsiProtocolError(f"{self._path}/{name} empty")
        return text


def _read_ins(node: etree._Element) -> ReturnedIns:
    # Children are looked up by name, so DateDeb before IdIndividu (the
    # CNDA's samples) reads the same as the schema's order.
    fields = _Children(node, RESULTAT_NS)
    matricule = _Children(fields.required("IdIndividu"), RESULTAT_NS)
    return ReturnedIns(
        nir13=matricule.required_text("NumIdentifiant"),
        key=matricule.text("Cle"),
        oid=fields.required_text("OID"),
        type=matricule.text("TypeMatricule"),
        start=fields.text("DateDeb"),
        end=fields.text("DateFin"),
    )


def _read_traits(node: etree._Element) -> ReturnedTraits:
    fields = _Children(node, RESULTAT_NS)
    return ReturnedTraits(
        birth_name=fields.text("NomNaissance"),
        first_name_sent=fields.text("Prenom"),
        first_names_list=fields.text("ListePrenom"),
        sex=fields.text("Sexe"),
        birth_date=fields.text("DateNaissance"),
        birth_place=fields.text("LieuNaissance"),
    )


def read_resultat(resultat: etree._Element) -> SearchResult:
    """Read a ``RESULTAT`` element into a `SearchResult`."""
    fields = _Children(resultat, RESULTAT_NS)
    cr = _Children(fields.required("CR"), RESULTAT_NS)
    code = cr.required_text("CodeCR")
    if code not in _CR_CODES:
        raise InsiProtocolError("CR/CodeCR outside 00, 01, 02")
    label = cr.text("LibelleCR") or ""

    individu = fields.one("INDIVIDU")
    if individu is None:
        if code == CodeCR.FOUND:
            raise InsiProtocolError("CodeCR 00 without INDIVIDU")
        return SearchResult(cr_code=code, cr_label=label)

    person = _Children(individu, RESULTAT_NS)
    return SearchResult(
        cr_code=code,
        cr_label=label,
        active=_read_ins(person.required("INSACTIF")),
        history=tuple(_read_ins(h) for h in person.all("INSHISTO")),
        traits=_read_traits(person.required("TIQ")),
    )


def read_fault(fault: etree._Element) -> FaultDetails:
    """Read a SOAP 1.2 ``Fault`` element, leniently, into `FaultDetails`."""
    parts = _Children(fault, SOAP12_NS)
    code = parts.one("Code")
    if code is None:
        raise InsiProtocolError("Fault/Code missing")
    code_parts = _Children(code, SOAP12_NS)
    subcode = code_parts.one("Subcode")
    subcode_value = (
        None if subcode is None
        else _Children(subcode, SOAP12_NS).text("Value")
    )

    reason = parts.one("Reason")
    texts = [] if reason is None else _Children(reason, SOAP12_NS).all("Text")
    reason_text = _text(texts[0]) if texts else None

    detail = parts.one("Detail")
    erreur = None if detail is None else detail.find(_ERREUR)

    def attribute(name: str) -> str | None:
        return None if erreur is None else erreur.get(name)


    return FaultDetails(
        code=_qname_local(code_parts.text("Value")),
        subcode=_qname_local(subcode_value),
        detail_code=attribute("code"),
        severity=_qname_local(attribute("severite")),
        message_id=attribute("messageID"),
        reason=reason_text,
    )


def classify(
    fault: FaultDetails,
) -> InsiTransientFault | InsiRequestFault | InsiConfigurationFault:
    """The exception a fault stands for: retry, bad request, or setup.

    The most specific code decides: the ``siram:Erreur`` code, then the
    subcode, then the SOAP code.

    - ``siram_100``, ``desir_550``, ``DESIR_560``: who is calling is not
      allowed (authorisation number, certificate CN): configuration.
    - ``siram_40``, ``insi_102``, ``desir_1020``: INSi's own back end
      failed or is unavailable: transient.
    - ``insi_24``: the request is invalid: request fault.

    Unknown codes fall back on the SOAP code, which says whose fault it
    is. ``Receiver`` means the service failed to process a message that
    may well be right, so another try later is the useful answer; the
    backoff, the retry budget and the breaker bound the cost. ``Sender``
    (and the envelope-level ``VersionMismatch``, ``MustUnderstand``,
    ``DataEncodingUnknown``, or no code at all) means the message itself
    was refused: sending it again would draw the same fault, and
    retrying what may be a configuration mistake on every message would
    hammer a traced service, so it is a permanent request fault.
    """
    for value in (fault.detail_code, fault.subcode):
        code = (value or "").lower()
        if code in _CONFIGURATION_CODES:
            return InsiConfigurationFault(fault)
        if code in _TRANSIENT_CODES:
            return InsiTransientFault(fault)
        if code in _REQUEST_CODES:
            return InsiRequestFault(fault)

    if fault.code == "Receiver":
        return InsiTransientFault(fault)
    return InsiRequestFault(fault)


def _soap_body(body: bytes, http_status: int) -> etree._Element:
    transient = http_status >= 500 or http_status in _TRANSIENT_STATUSES
    if transient and not body.strip():
        raise InsiHttpError(http_status)

    try:
        root = xmlsafe.parse(body)
    except xmlsafe.XmlRefused:
        # A gateway's HTML error page is not INSi's answer: the status is.
        if transient:
            raise InsiHttpError(http_status) from None
        raise

    if root.tag != _ENVELOPE:
        if transient:
            raise InsiHttpError(http_status)
        if root.tag == f"{{{SOAP11_NS}}}Envelope":
            raise InsiProtocolError("SOAP 1.1 envelope, 1.2 expected")
        raise InsiProtocolError("not a SOAP 1.2 envelope")

    soap_body = _Children(root, SOAP12_NS).one("Body")
    if soap_body is None:
        raise InsiProtocolError("Envelope/Body missing")
    return soap_body


def parse_reply(body: bytes, http_status: int = 200) -> SearchResult:
    """Read the HTTP body of an INSi reply.

    Returns the `SearchResult` of a ``RESULTAT`` (a ``01`` or ``02`` is
    a result, not an error). Raises the classified fault exception for a
    SOAP fault (whatever the status), `InsiHttpError` for a 5xx, 408 or
    429 without a SOAP envelope, and `InsiProtocolError` for anything
    else, including a ``RESULTAT`` under an error status.
    """
    soap_body = _soap_body(body, http_status)

    payload = [child for child in soap_body if isinstance(child.tag, str)]
    if len(payload) != 1:
        raise InsiProtocolError("Body must hold exactly one element")
    element = payload[0]

    if element.tag == _FAULT:
        raise classify(read_fault(element))
    if element.tag != _RESULTAT:
        raise InsiProtocolError("Body holds no RESULTAT")
    if not 200 <= http_status < 300:
        raise InsiProtocolError(f"RESULTAT under HTTP {http_status}")
    return read_resultat(element)
