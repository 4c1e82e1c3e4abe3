"""SOAP 1.2 faults the simulator sends, with the codes INSi uses.

Each :class:`FaultSpec` names the codes of one fault. The genuine ones
carry INSi's codes; the shape of ``insi_24`` and ``DESIR_560`` is not in
the kit, so their subcodes (``siram_10``, ``siram_100``) are this
simulator's choice. Faults whose detail code starts with ``simu_`` exist
only here: they refuse requests that break the contract in ways the real
service would reject somehow (wrong media type or action, missing
header, unreadable XML). Reason and detail texts are the simulator's own
wording, never the service's.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from worker.simulator.soap import (
    SIRAM_NS,
    SOAP11_NS,
    SOAP_NS,
    XML_NS,
    FaultStyle,
    envelope,
    fault_body,
    serialise,
)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """The codes and texts of one kind of fault.

    ``echoes_message_id``: whether ``siram:Erreur`` repeats the request's
    ``wsa:MessageID`` (the genuine ``desir_550`` does, ``insi_102`` not).
    """

    code: str
    subcode: str
    detail_code: str
    severity: str
    reason: str
    detail: str
    style: FaultStyle
    reason_lang: str = "fr"
    echoes_message_id: bool = True


UNKNOWN_SOFTWARE = FaultSpec(
    "Sender",
    "siram_100",
    "desir_550",
    "erreur",
    "Ce logiciel n'a pas accès au service : voir avec son éditeur.",
    "IDAM non reconnu.",
    FaultStyle.SOAP,
)
CERTIFICATE_REFUSED = FaultSpec(
    "Sender",
    "siram_100",
    "DESIR_560",
    "erreur",
    "Le certificat présenté ne donne pas accès à ce service.",
    "CN du certificat client non admis.",
    FaultStyle.SOAP,
)
INVALID_SEX = FaultSpec(
    "Sender",
    "siram_10",
    "insi_24",
    "erreur",
    "La requête est invalide.",
    "Sexe : M ou F attendu.",
    FaultStyle.SOAP,
)
BACKEND_ERROR = FaultSpec(
    "Receiver",
    "siram_40",
    "insi_102",
    "fatal",
    "Service momentanément indisponible, réessayer plus tard.",
    "Erreur technique de la recherche par traits.",
    FaultStyle.S,
    reason_lang="en",
    echoes_message_id=False,
)
SERVICE_UNAVAILABLE = FaultSpec(
    "Receiver",
    "siram_40",
    "desir_1020",
    "fatal",
    "Service momentanément indisponible, réessayer plus tard.",
    "Service fermé temporairement.",
    FaultStyle.S,
    reason_lang="en",
    echoes_message_id=False,
)


def protocol_fault(detail_code: str, detail: str) -> FaultSpec:
    """A simulator-only ``Sender`` fault for a request off the contract."""
    return FaultSpec(
        "Sender",
        "simu_protocol",
        detail_code,
        "erreur",
        "Requête hors contrat (simulateur INSi).",
        detail,
        FaultStyle.S,
    )


def fault_reply(
    spec: FaultSpec,
    message_id: str | None = None,
    style: FaultStyle | None = None,
) -> bytes:
    """The fault envelope, in ``spec``'s style unless ``style`` is given.

    ``message_id`` is written only when the fault echoes it.
    """
    style = style or spec.style
    prefix = style.value
    root = envelope()
    body = fault_body(root, style)
    nsmap = {prefix: SOAP_NS}
    if style is FaultStyle.S:
        # the genuine S-style fault declares the SOAP 1.1 namespace too
        nsmap["ns4"] = SOAP11_NS
    fault = etree.SubElement(body, f"{{{SOAP_NS}}}Fault", nsmap=nsmap)

    code = _soap(fault, "Code")
    _soap(code, "Value", f"{prefix}:{spec.code}")
    subcode = _soap(code, "Subcode")
    _soap(subcode, "Value", f"{prefix}:{spec.subcode}")
    reason = _soap(_soap(fault, "Reason"), "Text", spec.reason)
    reason.set(f"{{{XML_NS}}}lang", spec.reason_lang)

    erreur = etree.SubElement(
        _soap(fault, "Detail"),
        f"{{{SIRAM_NS}}}Erreur",
        nsmap={"siram": SIRAM_NS},
    )
    echoed = message_id if spec.echoes_message_id else None
    _set_attributes(erreur, spec, echoed, style)
    erreur.text = spec.detail

    return serialise(root)


def _soap(
    parent: etree._Element, name: str, text: str | None = None
) -> etree._Element:
    element = etree.SubElement(parent, f"{{{SOAP_NS}}}{name}")
    if text is not None:
        element.text = text
    return element


def _set_attributes(
    erreur: etree._Element,
    spec: FaultSpec,
    message_id: str | None,
    style: FaultStyle,
) -> None:
    # attribute order of each genuine sample, for look-alike output
    if style is FaultStyle.SOAP:
        erreur.set("code", spec.detail_code)
        if message_id is not None:
            erreur.set("messageID", message_id)
        erreur.set("severite", spec.severity)
    else:
        erreur.set("severite", spec.severity)
        erreur.set("code", spec.detail_code)
        if message_id is not None:
            erreur.set("messageID", message_id)
