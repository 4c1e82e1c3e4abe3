"""SOAP 1.2 envelopes as INSi serialises them, in both dialects seen.

INSi answers without a ``Header`` and with the ``Envelope`` always under
the ``soap`` prefix; the dialects differ in the ``Body`` element:

- ``live`` (the qualification service): ``env:Body`` declaring both
  ``S`` and ``env``, ``RESULTAT`` in the default namespace with the two
  request namespaces declared as ``ns0``/``ns1``;
- ``cnda`` (the CNDA's sample files): ``S:Body``, request namespaces
  declared as ``ns3``/``ns2``.

lxml writes an element under the first prefix declared for its namespace
on the nearest element, so each element that needs a given prefix
declares it itself; a repeated declaration changes nothing to the
document's meaning.
"""

from __future__ import annotations

from enum import StrEnum

from lxml import etree

SOAP_NS = "http://www.w3.org/2003/05/soap-envelope"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
WSA_NS = "http://www.w3.org/2005/08/addressing"
CTXLPS_NS = "urn:siram:lps:ctxlps"
CTXBAM_NS = "urn:siram:bam:ctxbam"
SIRAM_NS = "urn:siram"
RECSANS_NS = "http://www.cnamts.fr/INSiRecSans"
RECVIT_NS = "http://www.cnamts.fr/INSiRecVit"
RESULTAT_NS = "http://www.cnamts.fr/INSiResultat"

#: the SOAP action of the one operation the simulator serves
TRAITS_SEARCH_ACTION = (
    "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
)

#: the media type of SOAP 1.2 messages, requests and replies alike
SOAP_MEDIA_TYPE = "application/soap+xml"

#: written by hand: lxml would use single quotes, INSi uses double ones
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class Dialect(StrEnum):
    """How a ``RESULTAT`` is serialised."""

    LIVE = "live"
    CNDA = "cnda"


class FaultStyle(StrEnum):
    """The two serialisations of a SOAP fault seen from INSi.

    ``soap``: ``soap:Fault`` in an ``env:Body`` that declares ``env``
    only (the ``siram_100`` sample); ``S``: ``S:Fault`` in an
    ``env:Body`` that declares ``S`` and ``env`` (the ``siram_40``
    sample).
    """

    SOAP = "soap"
    S = "S"


def envelope() -> etree._Element:
    """An empty ``soap:Envelope``, without ``Header``."""
    return etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS})


def result_body(root: etree._Element, dialect: Dialect) -> etree._Element:
    """Append the ``Body`` of a result in ``dialect`` to ``root``."""
    if dialect is Dialect.LIVE:
        nsmap = {"env": SOAP_NS, "S": SOAP_NS}
    else:
        nsmap = {"S": SOAP_NS}
    return etree.SubElement(root, f"{{{SOAP_NS}}}Body", nsmap=nsmap)


def fault_body(root: etree._Element, style: FaultStyle) -> etree._Element:
    """Append the ``Body`` of a fault in ``style`` to ``root``."""
    if style is FaultStyle.SOAP:
        nsmap = {"env": SOAP_NS}
    else:
        nsmap = {"env": SOAP_NS, "S": SOAP_NS}
    return etree.SubElement(root, f"{{{SOAP_NS}}}Body", nsmap=nsmap)


def serialise(root: etree._Element, doctype: str | None = None) -> bytes:
    """The document as INSi sends it: UTF-8, double-quoted declaration.

    ``doctype`` is only ever used for hostile replies: INSi sends none.
    """
    if doctype is None:
        text = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    else:
        text = etree.tostring(
            root, encoding="UTF-8", xml_declaration=False, doctype=doctype
        )
    return _XML_DECLARATION + text
