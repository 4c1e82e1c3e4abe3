"""How outcomes change an identity's state, and the events they add."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from worker.domain.identity import (
    IdentityEvent,
    IdentityState,
    replaced_ins,
    transition,
)
from worker.domain.ins import (
    DEFAULT_ACCEPTED_OIDS,
    Environment,
    InsIdentifier,
    InsOid,
)
from worker.domain.outcome import Decision, decide, failure, rejection
from worker.domain.request import (
    DeskTraits,
    DocumentCheck,
    SuppliedIns,
    VerificationRequest,
)
from worker.domain.status import IdentityStatus
from worker.insi.model import ReturnedIns, ReturnedTraits, SearchResult

PROD = DEFAULT_ACCEPTED_OIDS[Environment.PRODUCTION]
CALLED_AT = datetime(2026, 12, 4, 8, 15, 3, tzinfo=UTC)

NIA = ReturnedIns("2090763220834", "39", InsOid.NIA)
NIR = ReturnedIns("1090763220834", "89", InsOid.NIR)
A = InsIdentifier(NIA.ins, NIA.oid)
B = InsIdentifier(NIR.ins, NIR.oid)
TRAITS = ReturnedTraits(
    "ECETINSI", None, "PIERRE-ALAIN", "M", "2009-07-14", "63220"
)
DESK = DeskTraits("Ecetinsi", ("Pierre-Alain",), "M", "2009-07-14", "63220")
CN = DocumentCheck("CN", "2026-12-04")
REQUEST = VerificationRequest("r1", "urn:pas", "ipp/1", DESK, document=CN)
NO_DOC = replace(REQUEST, document=None)


def found(active: ReturnedIns, *history: ReturnedIns) -> SearchResult:
    """A 00 answer for these traits."""
    return SearchResult("00", "OK", active, history, TRAITS)


def state(status: IdentityStatus, ins: InsIdentifier | None) -> IdentityState:
    """A previous state."""
    traits = TRAITS if ins else None
    return IdentityState(status, ins, traits=traits, document=CN)


def qualified_on(active: ReturnedIns, *history: ReturnedIns) -> Decision:
    """The decision qualifying the identity on ``active``."""
    return decide(REQUEST, found(active, *history), PROD, called_at=CALLED_AT)


QUAL_A = state(IdentityStatus.QUAL, A)
QUAL_B = state(IdentityStatus.QUAL, B)
RECUP_A = state(IdentityStatus.RECUP, A)
MISMATCH = decide(
    replace(REQUEST, traits=replace(DESK, sex="F")), found(NIR), PROD
)


@pytest.mark.parametrize(
    ("previous", "decision", "status", "ins", "events"),
    [
        (None, qualified_on(NIR), IdentityStatus.QUAL, B, []),
        (QUAL_B, qualified_on(NIR), IdentityStatus.QUAL, B, []),
        (
            QUAL_A,
            qualified_on(NIR, NIA),
            IdentityStatus.QUAL,
            B,
            [IdentityEvent.INS_CHANGED],
        ),
        # A never travelled: nobody holds it
        (RECUP_A, qualified_on(NIR, NIA), IdentityStatus.QUAL, B, []),
        (None, decide(NO_DOC, found(NIR), PROD), IdentityStatus.RECUP, B, []),
        (
            QUAL_B,
            decide(NO_DOC, found(NIR), PROD),
            IdentityStatus.RECUP,
            B,
            [IdentityEvent.UNQUALIFIED],
        ),
        # no ins_changed towards an identity that cannot carry its INS
        (
            QUAL_A,
            decide(NO_DOC, found(NIR, NIA), PROD),
            IdentityStatus.RECUP,
            B,
            [IdentityEvent.UNQUALIFIED],
        ),
        (
            QUAL_B,
            MISMATCH,
            IdentityStatus.PROV,
            None,
            [IdentityEvent.UNQUALIFIED],
        ),
        (RECUP_A, MISMATCH, IdentityStatus.PROV, None, []),
        (
            QUAL_B,
            decide(REQUEST, SearchResult("01", "x"), PROD),
            IdentityStatus.VALI,
            None,
            [IdentityEvent.UNQUALIFIED],
        ),
        (
            QUAL_B,
            decide(REQUEST, SearchResult("02", "x"), PROD),
            IdentityStatus.VALI,
            None,
            [IdentityEvent.UNQUALIFIED],
        ),
        (
            QUAL_B,
            decide(REQUEST, found(replace(NIR, key="88")), PROD),
            IdentityStatus.VALI,
            None,
            [IdentityEvent.UNQUALIFIED],
        ),
        (
            QUAL_B,
            rejection(REQUEST, "douteuse"),
            IdentityStatus.PROV,
            None,
            [IdentityEvent.UNQUALIFIED],
        ),
        (
            QUAL_B,
            rejection(REQUEST, "fictive"),
            IdentityStatus.PROV,
            None,
            [IdentityEvent.UNQUALIFIED],
        ),
        (
            QUAL_B,
            rejection(REQUEST, "birth_date_corrected"),
            IdentityStatus.PROV,
            None,
            [IdentityEvent.UNQUALIFIED],
        ),
        (None, rejection(REQUEST, "douteuse"), IdentityStatus.PROV, None, []),
    ],
)
def test_outcomes_move_the_state_and_add_events(
    previous: IdentityState | None,
    decision: Decision,
    status: IdentityStatus,
    ins: InsIdentifier | None,
    events: list[str],
) -> None:
    """INS changes and downgrades from QUAL are published."""
    new, added = transition(previous, decision)

    assert new is not None
    assert (new.status, new.ins) == (status, ins)
    assert added == events


@pytest.mark.parametrize(
    "decision",
    [
        failure(REQUEST, "timeout"),
        rejection(REQUEST, "unsupported_characters"),
        rejection(REQUEST, "invalid_sex"),
        rejection(REQUEST, "supplied_ins_invalid"),
    ],
)
@pytest.mark.parametrize("previous", [None, QUAL_B, RECUP_A])
def test_failures_and_request_refusals_keep_the_state(
    previous: IdentityState | None, decision: Decision
) -> None:
    """A request INSi never judged says nothing about the identity."""
    assert transition(previous, decision) == (previous, [])


def test_a_confirmed_state_keeps_insi_answer_as_returned() -> None:
    """INS, history, traits, document and call date come with QUAL."""
    new, _ = transition(None, qualified_on(NIR, NIA))

    assert new is not None
    assert new.ins == B and new.ins_type == "INS-NIR"
    assert [h.ins for h in new.history] == [NIA]
    assert new.traits is TRAITS
    assert new.document == CN
    assert new.called_at == CALLED_AT


def test_an_unconfirmed_state_keeps_no_registry_data() -> None:
    """A mismatch's INS and traits may be someone else's: not kept."""
    new, _ = transition(QUAL_B, MISMATCH)

    assert new is not None
    assert (new.ins, new.history, new.traits) == (None, (), None)
    assert new.ins_type is None


@pytest.mark.parametrize(
    ("previous", "supplied", "events", "old"),
    [
        (None, NIA, [IdentityEvent.INS_CHANGED], A),
        (None, NIR, [], None),
        (QUAL_B, NIA, [IdentityEvent.INS_CHANGED], A),
        # outdated both here and at the requester: one event, our old INS
        (QUAL_A, NIA, [IdentityEvent.INS_CHANGED], A),
    ],
)
def test_a_historical_supplied_ins_is_replaced_by_the_active_one(
    previous: IdentityState | None,
    supplied: ReturnedIns,
    events: list[str],
    old: InsIdentifier | None,
) -> None:
    """The requester's outdated INS gets an ins_changed with old and new."""
    request_ = replace(REQUEST, ins=SuppliedIns(supplied.ins, supplied.oid))
    decision = decide(request_, found(NIR, NIA), PROD)

    _, added = transition(previous, decision)

    assert added == events
    assert replaced_ins(previous, decision) == old


def test_no_ins_changed_for_a_historical_ins_when_not_qualified() -> None:
    """Without a document, the new INS may not travel: no ins_changed."""
    request_ = replace(NO_DOC, ins=SuppliedIns(NIA.ins, NIA.oid))
    decision = decide(request_, found(NIR, NIA), PROD)

    assert transition(None, decision)[1] == []
    assert replaced_ins(None, decision) is None
