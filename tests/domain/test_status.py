"""The four RNIV statuses, high-trust documents and format codes."""

from __future__ import annotations

import pytest

from worker.domain.request import DocumentCheck
from worker.domain.status import (
    HIGH_TRUST_DOCUMENTS,
    IdentityStatus,
    StatusFormat,
    is_high_trust,
    status_code,
    status_for,
)

CHECKED = "2026-12-04"


@pytest.mark.parametrize(
    ("confirmed", "document", "expected"),
    [
        (True, DocumentCheck("CN", CHECKED), IdentityStatus.QUAL),
        (True, None, IdentityStatus.RECUP),
        (False, DocumentCheck("PA", CHECKED), IdentityStatus.VALI),
        (False, None, IdentityStatus.PROV),
        (True, DocumentCheck("PERMIS", CHECKED), IdentityStatus.RECUP),
        (False, DocumentCheck("PERMIS", CHECKED), IdentityStatus.PROV),
        # a birth certificate or family record book alone is not enough
        (True, DocumentCheck("AN", CHECKED), IdentityStatus.RECUP),
        (True, DocumentCheck("LEP", CHECKED), IdentityStatus.RECUP),
        (True, DocumentCheck("ANCV", CHECKED), IdentityStatus.QUAL),
        (True, DocumentCheck("LECV", CHECKED), IdentityStatus.QUAL),
        # codes compare exactly
        (True, DocumentCheck("ecn", CHECKED), IdentityStatus.RECUP),
        (True, DocumentCheck("cn", CHECKED), IdentityStatus.RECUP),
        # a check on no known day is no check
        (True, DocumentCheck("CN", "yesterday"), IdentityStatus.RECUP),
        (
            True,
            DocumentCheck("CN", "2026-12-04T08:15:02Z"),
            IdentityStatus.QUAL,
        ),
    ],
)
def test_status_follows_insi_and_the_document(
    confirmed: bool, document: DocumentCheck | None, expected: IdentityStatus
) -> None:
    """INSi gives at most RECUP; a high-trust document adds the second axis."""
    assert status_for(confirmed, document) is expected


@pytest.mark.parametrize("code", ["CN", "PA", "CS", "eCN", "AV"])
def test_the_rules_high_trust_documents_qualify(code: str) -> None:
    """Identity card, passport, residence permit, eID, the Vitale app."""
    assert code in HIGH_TRUST_DOCUMENTS
    assert is_high_trust(DocumentCheck(code, CHECKED))


def test_no_document_is_not_high_trust() -> None:
    """Without a document, nothing was checked."""
    assert not is_high_trust(None)


@pytest.mark.parametrize(
    ("status", "fmt", "expected"),
    [
        (IdentityStatus.QUAL, StatusFormat.FR_CORE, "QUAL"),
        (IdentityStatus.RECUP, StatusFormat.FR_CORE, "RECUP"),
        (IdentityStatus.VALI, StatusFormat.FR_CORE, "VALI"),
        (IdentityStatus.PROV, StatusFormat.FR_CORE, "PROV"),
        (IdentityStatus.QUAL, StatusFormat.IHE_PAM_FR, "VALI"),
        (IdentityStatus.VALI, StatusFormat.IHE_PAM_FR, "PROV"),
        (IdentityStatus.RECUP, StatusFormat.IHE_PAM_FR, "PROV"),
        (IdentityStatus.PROV, StatusFormat.IHE_PAM_FR, "PROV"),
        (IdentityStatus.QUAL, StatusFormat.FR_CORE_LEGACY, "VALI"),
        (IdentityStatus.VALI, StatusFormat.FR_CORE_LEGACY, "PROV"),
    ],
)
def test_each_format_spells_the_status_its_way(
    status: IdentityStatus, fmt: StatusFormat, expected: str
) -> None:
    """Only a qualified identity is VALI ("INS may be sent") in old formats."""
    assert status_code(status, fmt) == expected


def test_there_are_exactly_the_four_rniv_statuses() -> None:
    """PROV, RECUP, VALI and QUAL, spelled as FR Core spells them."""
    assert [s.value for s in IdentityStatus] == [
        "PROV",
        "RECUP",
        "VALI",
        "QUAL",
    ]
