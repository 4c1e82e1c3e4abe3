"""The four RNIV identity statuses and how each output format codes them.

A status sits on two axes: INS confirmed by INSi, and traits checked at
the desk against a high-trust document. Only ``QUAL`` (both) lets the INS
travel.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from worker.domain.request import DocumentCheck


class IdentityStatus(StrEnum):
    """The RNIV status of a local identity, named by its official code."""

    #: provisoire: neither confirmed by INSi nor checked on a document
    PROV = "PROV"
    #: récupérée: confirmed by INSi, no high-trust document checked
    RECUP = "RECUP"
    #: validée: checked on a high-trust document, not confirmed by INSi
    VALI = "VALI"
    #: qualifiée: both; the only status with which the INS may travel
    QUAL = "QUAL"


class DocumentType(StrEnum):
    """Identity document codes a request may carry.

    The codes are those of FR Core's identity validation mode code system
    (``fr-core-cs-mode-validation-identity``), so that they render
    unchanged in FHIR; ``PERMIS`` (driving licence) is ours, since FR Core
    has no code for a document that can never validate an identity.
    """

    NATIONAL_ID_CARD = "CN"
    PASSPORT = "PA"
    RESIDENCE_PERMIT = "CS"
    ELECTRONIC_ID = "eCN"
    VITALE_APP = "AV"
    #: extract of the birth certificate with a photo Vitale card
    BIRTH_CERTIFICATE_WITH_PHOTO_VITALE = "ANCV"
    #: family record book with a photo Vitale card
    FAMILY_RECORD_BOOK_WITH_PHOTO_VITALE = "LECV"
    #: the same documents alone, without the photo Vitale card
    BIRTH_CERTIFICATE = "AN"
    PARENTS_FAMILY_RECORD_BOOK = "LEP"
    DIGITAL_IDENTITY_LA_POSTE = "IN"
    MINOR_TRAVEL_DOCUMENT = "CC"
    DRIVING_LICENCE = "PERMIS"


#: The documents that let an identity be validated (RNIV's high-trust
#: list). A birth certificate or family record book counts only together
#: with a photo Vitale card, hence the combined codes. Codes compare
#: exactly: ``ecn`` is not ``eCN``.
HIGH_TRUST_DOCUMENTS: frozenset[str] = frozenset(
    {
        DocumentType.NATIONAL_ID_CARD,
        DocumentType.PASSPORT,
        DocumentType.RESIDENCE_PERMIT,
        DocumentType.ELECTRONIC_ID,
        DocumentType.VITALE_APP,
        DocumentType.BIRTH_CERTIFICATE_WITH_PHOTO_VITALE,
        DocumentType.FAMILY_RECORD_BOOK_WITH_PHOTO_VITALE,
    }
)


class StatusFormat(StrEnum):
    """Consumers that spell the status differently."""

    #: FR Core 2.x: the four RNIV codes
    FR_CORE = "fr-core"
    #: older FR Core (HL7 table 0445 codes)
    FR_CORE_LEGACY = "fr-core-legacy"
    #: IHE PAM France, HL7 v2 PID-32
    IHE_PAM_FR = "ihe-pam-fr"


def document_date(document: DocumentCheck) -> date | None:
    """The day of the check, from a date or a date-time; ``None`` if bad."""
    text = document.checked_at.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def is_high_trust(document: DocumentCheck | None) -> bool:
    """Whether the desk checked a high-trust document on a known day."""
    if document is None:
        return False
    return (
        document.type in HIGH_TRUST_DOCUMENTS
        and document_date(document) is not None
    )


def status_for(
    insi_confirmed: bool,
    document: DocumentCheck | None,
) -> IdentityStatus:
    """The status from its two axes."""
    checked = is_high_trust(document)
    if insi_confirmed and checked:
        return IdentityStatus.QUAL
    if insi_confirmed:
        return IdentityStatus.RECUP
    if checked:
        return IdentityStatus.VALI
    return IdentityStatus.PROV


def status_code(status: IdentityStatus, fmt: StatusFormat) -> str:
    """The code ``fmt`` uses for ``status``.

    IHE PAM France and older FR Core have one code that matters, ``VALI``,
    meaning "the INS may be sent": only a qualified identity gets it, every
    other status is ``PROV`` there. The mapping is lossy on purpose: an
    RNIV ``VALI`` (document checked, no INSi) must never reach those
    consumers as ``VALI``.
    """
    if fmt is StatusFormat.FR_CORE:
        return status.value
    if status is IdentityStatus.QUAL:
        return "VALI"
    return "PROV"
