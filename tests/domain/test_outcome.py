"""What an INSi answer decides for a request."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from worker.domain.ins import DEFAULT_ACCEPTED_OIDS, Environment, InsOid
from worker.domain.outcome import (
    Decision,
    OutcomeType,
    SuppliedVerdict,
    decide,
    failure,
    rejection,
)
from worker.domain.request import (
    DeskTraits,
    DocumentCheck,
    SuppliedIns,
    VerificationRequest,
)
from worker.domain.status import IdentityStatus
from worker.insi.model import ReturnedIns, ReturnedTraits, SearchResult

PROD = DEFAULT_ACCEPTED_OIDS[Environment.PRODUCTION]
QUALIF = DEFAULT_ACCEPTED_OIDS[Environment.QUALIFICATION]
CALLED_AT = datetime(2026, 12, 4, 8, 15, 3, tzinfo=UTC)

ACTIVE = ReturnedIns("1090763220834", "89", InsOid.NIR)
OLD = ReturnedIns(
    "2090763220834", "39", InsOid.NIR, None, "2019-03-01", "2019-02-28"
)
OLD_BAD_KEY = ReturnedIns("2090663220123", "56", InsOid.NIR)
TRAITS = ReturnedTraits(
    birth_name="ECETINSI",
    first_name_sent=None,
    first_names_list="PIERRE-ALAIN MURIEL FLORIANT",
    sex="M",
    birth_date="2009-07-14",
    birth_place="63220",
)
FOUND = SearchResult("00", "OK", ACTIVE, (OLD,), TRAITS)
NONE = SearchResult("01", "Aucune identite trouvee")
SEVERAL = SearchResult("02", "Plusieurs identites trouvees")

DESK = DeskTraits("Ecetinsi", ("Pierre-Alain",), "M", "2009-07-14", "63220")
CN = DocumentCheck("CN", "2026-12-04")
REQUEST = VerificationRequest(
    request_id="r1",
    source="urn:example:pas:hospital-a",
    patient_ref="ipp/000123456",
    traits=DESK,
    document=CN,
)
NO_DOC = replace(REQUEST, document=None)


def supplying(ins: ReturnedIns) -> VerificationRequest:
    """The request, verifying a known INS."""
    return replace(REQUEST, ins=SuppliedIns(ins.ins, ins.oid))


@pytest.mark.parametrize(
    ("request_", "result", "outcome", "status", "reason"),
    [
        (REQUEST, FOUND, OutcomeType.QUALIFIED, IdentityStatus.QUAL, None),
        (NO_DOC, FOUND, OutcomeType.RETRIEVED, IdentityStatus.RECUP, None),
        (
            replace(REQUEST, document=DocumentCheck("PERMIS", "2026-12-04")),
            FOUND,
            OutcomeType.RETRIEVED,
            IdentityStatus.RECUP,
            None,
        ),
        (
            replace(REQUEST, traits=replace(DESK, birth_name="Ecetinsy")),
            FOUND,
            OutcomeType.MISMATCH,
            IdentityStatus.PROV,
            "traits_mismatch",
        ),
        (
            REQUEST,
            replace(FOUND, active=replace(ACTIVE, key="88")),
            OutcomeType.ANOMALY,
            IdentityStatus.VALI,
            "returned_ins_invalid",
        ),
        (
            NO_DOC,
            replace(FOUND, active=replace(ACTIVE, oid=InsOid.NIR_TEST)),
            OutcomeType.ANOMALY,
            IdentityStatus.PROV,
            "returned_ins_invalid",
        ),
        (
            REQUEST,
            replace(FOUND, active=None),
            OutcomeType.ANOMALY,
            IdentityStatus.VALI,
            "incomplete_result",
        ),
        (
            REQUEST,
            replace(FOUND, traits=None),
            OutcomeType.ANOMALY,
            IdentityStatus.VALI,
            "incomplete_result",
        ),
        (
            REQUEST,
            replace(FOUND, traits=replace(TRAITS, sex=None)),
            OutcomeType.ANOMALY,
            IdentityStatus.VALI,
            "incomplete_traits",
        ),
        (REQUEST, NONE, OutcomeType.NOT_FOUND, IdentityStatus.VALI, None),
        (NO_DOC, NONE, OutcomeType.NOT_FOUND, IdentityStatus.PROV, None),
        (NO_DOC, SEVERAL, OutcomeType.AMBIGUOUS, IdentityStatus.PROV, None),
        (
            NO_DOC,
            SearchResult("03", "?"),
            OutcomeType.ANOMALY,
            IdentityStatus.PROV,
            "unexpected_cr_code",
        ),
        (
            supplying(ACTIVE),
            FOUND,
            OutcomeType.QUALIFIED,
            IdentityStatus.QUAL,
            None,
        ),
        (
            supplying(OLD),
            FOUND,
            OutcomeType.QUALIFIED,
            IdentityStatus.QUAL,
            None,
        ),
        # DARK JEANNE's valid INS: not this person's
        (
            supplying(ReturnedIns("2600588154002", "33", InsOid.NIR)),
            FOUND,
            OutcomeType.MISMATCH,
            IdentityStatus.PROV,
            "supplied_ins_unknown",
        ),
        (
            supplying(OLD_BAD_KEY),
            replace(FOUND, history=(OLD_BAD_KEY,)),
            OutcomeType.MISMATCH,
            IdentityStatus.PROV,
            "supplied_ins_unknown",
        ),
        (
            replace(supplying(ACTIVE), traits=replace(DESK, sex="F")),
            FOUND,
            OutcomeType.MISMATCH,
            IdentityStatus.PROV,
            "traits_mismatch",
        ),
    ],
)
def test_each_answer_leads_to_its_outcome(
    request_: VerificationRequest,
    result: SearchResult,
    outcome: OutcomeType,
    status: IdentityStatus,
    reason: str | None,
) -> None:
    """00/01/02, traits, INS checks and the supplied INS decide."""
    decision = decide(request_, result, PROD, called_at=CALLED_AT)

    assert (decision.outcome, decision.status, decision.reason) == (
        outcome,
        status,
        reason,
    )
    assert decision.cr_code == result.cr_code
    assert decision.called_at == CALLED_AT


@pytest.mark.parametrize(
    ("active", "problems"),
    [
        (replace(ACTIVE, key="88"), ("key",)),
        (replace(ACTIVE, key=None), ("length",)),
        (replace(ACTIVE, oid=InsOid.NIR_TEST), ("oid_not_accepted",)),
        (replace(ACTIVE, oid="1.2.250.1.213.1.4.2"), ("oid_unknown",)),
        (
            replace(ACTIVE, nir13="3090763220834", key="88"),
            ("sex_digit", "key"),
        ),
    ],
)
def test_an_untrusted_active_ins_is_an_anomaly_with_its_reasons(
    active: ReturnedIns, problems: tuple[str, ...]
) -> None:
    """Never qualified on an INS that fails; the reasons are kept."""
    decision = decide(REQUEST, replace(FOUND, active=active), PROD)

    assert decision.outcome is OutcomeType.ANOMALY
    assert decision.status is not IdentityStatus.QUAL
    assert decision.problems == problems
    assert decision.active == active


@pytest.mark.parametrize(
    ("desk", "mismatched"),
    [
        (replace(DESK, first_names=("Muriel",)), ("first_name",)),
        (
            replace(DESK, sex="F", birth_date="2009-07-15"),
            ("sex", "birth_date"),
        ),
        (replace(DESK, birth_place="63113"), ("birth_place",)),
    ],
)
def test_a_mismatch_names_the_fields_and_never_qualifies(
    desk: DeskTraits, mismatched: tuple[str, ...]
) -> None:
    """Even with a high-trust document, disagreeing traits stay PROV."""
    decision = decide(replace(REQUEST, traits=desk), FOUND, PROD)

    assert decision.outcome is OutcomeType.MISMATCH
    assert decision.status is IdentityStatus.PROV
    assert decision.mismatched == mismatched
    assert decision.traits == TRAITS


def test_history_repeating_the_active_ins_is_dropped() -> None:
    """INSHISTO listing the active INS again, or twice, counts once."""
    result = replace(FOUND, history=(ACTIVE, OLD, OLD))

    decision = decide(REQUEST, result, PROD)

    assert [h.ins for h in decision.history] == [OLD]


def test_a_historical_ins_failing_its_key_is_kept_flagged() -> None:
    """A bad old number is kept for the record, never published."""
    result = replace(FOUND, history=(OLD, OLD_BAD_KEY))

    decision = decide(REQUEST, result, PROD)

    assert decision.outcome is OutcomeType.QUALIFIED
    assert [(h.ins, h.problems) for h in decision.history] == [
        (OLD, ()),
        (OLD_BAD_KEY, ("key",)),
    ]
    assert [i.value for i in decision.valid_history] == [OLD.ins]


@pytest.mark.parametrize(
    ("request_", "result", "verdict"),
    [
        (REQUEST, FOUND, None),
        (supplying(ACTIVE), FOUND, SuppliedVerdict.ACTIVE),
        (supplying(OLD), FOUND, SuppliedVerdict.HISTORICAL),
        (supplying(OLD), replace(FOUND, history=()), SuppliedVerdict.UNKNOWN),
        (
            replace(REQUEST, ins=SuppliedIns(ACTIVE.ins, InsOid.NIA)),
            FOUND,
            SuppliedVerdict.UNKNOWN,
        ),
        (supplying(ACTIVE), NONE, SuppliedVerdict.UNKNOWN),
        (supplying(ACTIVE), SEVERAL, SuppliedVerdict.UNKNOWN),
    ],
)
def test_a_supplied_ins_is_found_active_historical_or_unknown(
    request_: VerificationRequest,
    result: SearchResult,
    verdict: SuppliedVerdict | None,
) -> None:
    """Value and OID must both equal a returned, valid INS."""
    assert decide(request_, result, PROD).supplied_verdict == verdict


def test_not_found_with_a_supplied_ins_is_still_not_found() -> None:
    """01 stays not_found; the supplied INS is unknown."""
    decision = decide(supplying(ACTIVE), NONE, PROD)

    assert decision.outcome is OutcomeType.NOT_FOUND
    assert decision.active is None


@pytest.mark.parametrize(
    ("name", "environment", "outcome"),
    [
        ("cnda-TEST_2.04_cas2.xml", "qualification", OutcomeType.QUALIFIED),
        ("cnda-TEST_2.08_cas1.xml", "qualification", OutcomeType.QUALIFIED),
        (
            "live-adrtrois-toussaint.xml",
            "qualification",
            OutcomeType.QUALIFIED,
        ),
        (
            "live-ecetinsi-pierre-alain.xml",
            "qualification",
            OutcomeType.QUALIFIED,
        ),
        (
            "live-ecetinsi-pierre-alain.xml",
            "production",
            OutcomeType.QUALIFIED,
        ),
        ("live-ecetinsi-pierre-alain.xml", "test", OutcomeType.ANOMALY),
        ("cnda-REP_CR01.xml", "qualification", OutcomeType.NOT_FOUND),
        ("live-cr02-multiple.xml", "qualification", OutcomeType.AMBIGUOUS),
    ],
)
def test_the_kit_answers_decide_as_expected(
    kit_results: dict[str, SearchResult],
    name: str,
    environment: str,
    outcome: OutcomeType,
) -> None:
    """Genuine answers, desk traits as typed: the environment matters."""
    result = kit_results[name]
    desk = DESK
    if result.traits is not None:
        traits = result.traits
        desk = DeskTraits(
            birth_name=(traits.birth_name or "").title(),
            first_names=tuple(n.lower() for n in traits.first_names[:1]),
            sex=traits.sex or "",
            birth_date=traits.birth_date or "",
            birth_place=traits.birth_place,
        )

    decision = decide(
        replace(REQUEST, traits=desk),
        result,
        DEFAULT_ACCEPTED_OIDS[Environment(environment)],
    )

    assert decision.outcome is outcome
    if result.active is not None:
        assert all(h.ins != result.active for h in decision.history)


def test_refused_and_failed_requests_have_decisions_too() -> None:
    """rejection() and failure() feed the same transition and events."""
    refused = rejection(REQUEST, "douteuse")
    failed = failure(REQUEST, "timeout", called_at=CALLED_AT)

    assert (refused.outcome, refused.reason) == (
        OutcomeType.REJECTED,
        "douteuse",
    )
    assert (failed.outcome, failed.reason, failed.called_at) == (
        OutcomeType.FAILED,
        "timeout",
        CALLED_AT,
    )
    assert isinstance(refused, Decision) and refused.document == CN
    assert rejection(None, "schema_invalid").document is None
