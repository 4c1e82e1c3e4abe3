"""What a request must pass before any INSi call."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from worker.domain.checks import SearchTraits, check_request
from worker.domain.ins import DEFAULT_ACCEPTED_OIDS, Environment, InsOid
from worker.domain.request import (
    DeskTraits,
    DocumentCheck,
    SuppliedIns,
    VerificationRequest,
)
from worker.errors import RequestRefused
from worker.insi.model import TraitsSearch

TODAY = date(2026, 12, 4)
PROD = DEFAULT_ACCEPTED_OIDS[Environment.PRODUCTION]

DESK = DeskTraits(
    birth_name="Ecetinsi",
    first_names=("Pierre-Alain", "Muriel"),
    sex="M",
    birth_date="2009-07-14",
    birth_place="63220",
)
REQUEST = VerificationRequest(
    request_id="6f1c2e0a-3b7d-4f0e-9a55-2b8f5c1d9e44",
    source="urn:example:pas:hospital-a",
    patient_ref="ipp/000123456",
    traits=DESK,
    document=DocumentCheck("CN", "2026-12-04"),
)


def with_traits(**changes: Any) -> VerificationRequest:
    """The valid request with some desk traits changed."""
    return replace(REQUEST, traits=replace(DESK, **changes))


@pytest.mark.parametrize(
    ("request_", "reason", "field"),
    [
        (
            replace(REQUEST, attributes=frozenset({"douteuse"})),
            "douteuse",
            "attributes",
        ),
        (
            replace(REQUEST, attributes=frozenset({"FICTIVE"})),
            "fictive",
            "attributes",
        ),
        (
            replace(REQUEST, attributes=frozenset({"fictive", "douteuse"})),
            "douteuse",
            "attributes",
        ),
        # an attribute refusal comes before anything else
        (
            replace(
                REQUEST,
                attributes=frozenset({"douteuse"}),
                traits=replace(DESK, sex="X"),
            ),
            "douteuse",
            "attributes",
        ),
        (
            with_traits(birth_date_corrected=True),
            "birth_date_corrected",
            "traits.birth_date",
        ),
        (with_traits(sex="I"), "invalid_sex", "traits.sex"),
        (with_traits(sex=""), "invalid_sex", "traits.sex"),
        (with_traits(sex="MF"), "invalid_sex", "traits.sex"),
        (
            with_traits(birth_date="2009-02-30"),
            "impossible_date",
            "traits.birth_date",
        ),
        (
            with_traits(birth_date="2009-00-00"),
            "impossible_date",
            "traits.birth_date",
        ),
        (
            with_traits(birth_date="14/07/2009"),
            "impossible_date",
            "traits.birth_date",
        ),
        (
            with_traits(birth_date="2009-7-14"),
            "impossible_date",
            "traits.birth_date",
        ),
        (
            with_traits(birth_date="1849-12-31"),
            "impossible_date",
            "traits.birth_date",
        ),
        (
            with_traits(birth_date="2026-12-06"),
            "impossible_date",
            "traits.birth_date",
        ),
        (
            with_traits(birth_place="6322"),
            "invalid_birth_place",
            "traits.birth_place",
        ),
        (
            with_traits(birth_place="632200"),
            "invalid_birth_place",
            "traits.birth_place",
        ),
        (
            with_traits(birth_place="ABCDE"),
            "invalid_birth_place",
            "traits.birth_place",
        ),
        (
            with_traits(birth_place="2C020"),
            "invalid_birth_place",
            "traits.birth_place",
        ),
        (
            with_traits(birth_place="00123"),
            "invalid_birth_place",
            "traits.birth_place",
        ),
        (
            with_traits(birth_place="97901"),
            "invalid_birth_place",
            "traits.birth_place",
        ),
        (
            with_traits(birth_place="98101"),
            "invalid_birth_place",
            "traits.birth_place",
        ),
        (
            with_traits(birth_place="99012"),
            "invalid_birth_place",
            "traits.birth_place",
        ),
        (
            with_traits(birth_name="Ecetinsi2"),
            "unsupported_characters",
            "traits.birth_name",
        ),
        (
            with_traits(first_names=("Pierre", "Al@in")),
            "unsupported_characters",
            "traits.first_names[1]",
        ),
        (with_traits(birth_name="  "), "missing_trait", "traits.birth_name"),
        (
            replace(REQUEST, document=DocumentCheck("CN", "hier")),
            "invalid_document_date",
            "document.checked_at",
        ),
        (
            replace(REQUEST, document=DocumentCheck("CN", "2026-12-07")),
            "invalid_document_date",
            "document.checked_at",
        ),
        (
            replace(REQUEST, ins=SuppliedIns("123456789012244", InsOid.NIR)),
            "supplied_ins_invalid",
            "ins",
        ),
        (
            replace(
                REQUEST, ins=SuppliedIns("279035121518989", InsOid.NIR_TEST)
            ),
            "supplied_ins_invalid",
            "ins",
        ),
        (
            replace(REQUEST, ins=SuppliedIns("27903512151898", InsOid.NIR)),
            "supplied_ins_invalid",
            "ins",
        ),
    ],
)
def test_requests_breaking_a_rule_are_refused_with_its_reason(
    request_: VerificationRequest, reason: str, field: str
) -> None:
    """Each rule refuses with its code; the detail names the field only."""
    with pytest.raises(RequestRefused) as caught:
        check_request(request_, PROD, today=TODAY)

    assert caught.value.reason == reason
    assert field in caught.value.detail
    message = str(caught.value)
    for value in (
        request_.traits.birth_name.strip(),
        *request_.traits.first_names,
        request_.traits.birth_date,
        request_.ins.value if request_.ins else "",
    ):
        if len(value) > 3:
            assert value not in message


def test_a_supplied_ins_refusal_lists_its_reason_codes() -> None:
    """The detail says which INS checks failed, never the INS."""
    request_ = replace(
        REQUEST, ins=SuppliedIns("279035121518989", InsOid.NIR_TEST)
    )

    with pytest.raises(RequestRefused) as caught:
        check_request(request_, PROD, today=TODAY)

    assert "oid_not_accepted" in caught.value.detail


def test_a_valid_request_gives_the_traits_normalised_for_insi() -> None:
    """Names uppercase without diacritics, sex uppercase, place kept."""
    request_ = replace(
        REQUEST,
        traits=replace(DESK, birth_name=" Écetinsi ", sex="m"),
        ins=SuppliedIns("109076322083489", InsOid.NIR),
        attributes=frozenset({"homonyme"}),
    )

    checked = check_request(request_, PROD, today=TODAY)

    assert checked == SearchTraits(
        birth_name="ECETINSI",
        first_names=("PIERRE-ALAIN", "MURIEL"),
        sex="M",
        birth_date="2009-07-14",
        birth_place="63220",
    )


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"birth_date": "2026-12-05"}, "birth_date", "2026-12-05"),
        ({"birth_date": "1850-01-01"}, "birth_date", "1850-01-01"),
        ({"birth_place": "2a020"}, "birth_place", "2A020"),
        ({"birth_place": "99350"}, "birth_place", "99350"),
        ({"birth_place": "97411"}, "birth_place", "97411"),
        ({"birth_place": "98735"}, "birth_place", "98735"),
        ({"birth_place": " "}, "birth_place", None),
        ({"birth_place": None}, "birth_place", None),
        ({"first_names": ()}, "first_names", ()),
    ],
)
def test_edge_values_that_are_accepted(
    changes: dict[str, Any], field: str, expected: object
) -> None:
    """Born tomorrow in UTC (overseas today), 1850, Corsica, abroad."""
    checked = check_request(with_traits(**changes), PROD, today=TODAY)

    assert getattr(checked, field) == expected


def test_a_document_check_with_a_timestamp_is_accepted() -> None:
    """``checked_at`` may be a date-time."""
    request_ = replace(
        REQUEST, document=DocumentCheck("CN", "2026-12-04T08:15:02Z")
    )

    assert check_request(request_, PROD, today=TODAY).birth_name == (
        "ECETINSI"
    )


def test_the_current_date_is_used_by_default() -> None:
    """Without ``today``, a birth date far in the future is refused."""
    with pytest.raises(RequestRefused) as caught:
        check_request(with_traits(birth_date="2999-01-01"), PROD)

    assert caught.value.reason == "impossible_date"


@pytest.mark.parametrize(
    ("first_names", "with_place", "expected"),
    [
        (
            None,
            False,
            TraitsSearch(
                "ECETINSI", ("PIERRE-ALAIN", "MURIEL"), "M", "2009-07-14"
            ),
        ),
        (
            ("PIERRE-ALAIN",),
            False,
            TraitsSearch("ECETINSI", ("PIERRE-ALAIN",), "M", "2009-07-14"),
        ),
        (
            ("PIERRE-ALAIN MURIEL",),
            True,
            TraitsSearch(
                "ECETINSI",
                ("PIERRE-ALAIN MURIEL",),
                "M",
                "2009-07-14",
                "63220",
            ),
        ),
    ],
)
def test_a_search_takes_the_chosen_first_names_and_place(
    first_names: tuple[str, ...] | None,
    with_place: bool,
    expected: TraitsSearch,
) -> None:
    """The strategy picks first names; the birth place only when asked."""
    checked = check_request(REQUEST, PROD, today=TODAY)

    search = checked.search(first_names, with_birth_place=with_place)

    assert search == expected
