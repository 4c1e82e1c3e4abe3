"""The data identity events carry."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.domain.identity import IdentityEvent, IdentityState, transition
from worker.domain.ins import (
    DEFAULT_ACCEPTED_OIDS,
    Environment,
    InsIdentifier,
    InsOid,
)
from worker.domain.outcome import Decision, decide, failure, rejection
from worker.domain.payload import event_data
from worker.domain.request import (
    DeskTraits,
    DocumentCheck,
    SuppliedIns,
    VerificationRequest,
)
from worker.domain.status import IdentityStatus
from worker.insi.model import ReturnedIns, ReturnedTraits, SearchResult

PROD = DEFAULT_ACCEPTED_OIDS[Environment.PRODUCTION]
CALLED_AT = datetime(2026, 12, 4, 8, 15, 3, 456000, tzinfo=UTC)

ACTIVE = ReturnedIns("1090763220834", "89", InsOid.NIR)
OLD = ReturnedIns(
    "2090763220834", "39", InsOid.NIR, None, "2019-03-01", "2019-02-28"
)
OLD_BAD_KEY = ReturnedIns("2090663220123", "56", InsOid.NIR)
# as the registry might spell it: stored and published unnormalised
TRAITS = ReturnedTraits(
    "Écetinsi", None, "Pierre-Alain Muriel", "M", "2009-07-14", "63220"
)
FOUND = SearchResult("00", "OK", ACTIVE, (OLD, OLD_BAD_KEY), TRAITS)
DESK = DeskTraits("ECETINSI", ("PIERRE-ALAIN",), "M", "2009-07-14", "63220")
CN = DocumentCheck("CN", "2026-12-04")
REQUEST = VerificationRequest("r1", "urn:pas", "ipp/1", DESK, document=CN)


def data_for(
    decision: Decision,
    previous: IdentityState | None = None,
    event_type: str | None = None,
) -> dict[str, object]:
    """The event data as the pipeline would build it."""
    state, _ = transition(previous, decision)
    kind = event_type or decision.outcome.value
    return event_data(kind, "r1", decision, state, previous)


def test_a_qualified_event_carries_the_ins_and_everything() -> None:
    """INS, valid history, traits as returned, status, INSi call."""
    data = data_for(decide(REQUEST, FOUND, PROD, called_at=CALLED_AT))

    assert data["status"] == "QUAL"
    assert data["outcome"] == "qualified"
    assert data["ins"] == {
        "value": "109076322083489",
        "oid": InsOid.NIR,
        "type": "INS-NIR",
    }
    assert data["history"] == [
        {
            "value": "209076322083439",
            "oid": InsOid.NIR,
            "type": "INS-NIR",
            "start": "2019-03-01",
            "end": "2019-02-28",
        }
    ]
    assert data["traits"] == {
        "birth_name": "Écetinsi",
        "first_name": "Pierre-Alain",
        "first_names": "Pierre-Alain Muriel",
        "sex": "M",
        "birth_date": "2009-07-14",
        "birth_place": "63220",
    }
    assert data["insi"] == {
        "called_at": "2026-12-04T08:15:03Z",
        "cr_code": "00",
    }
    assert data["document"] == {"type": "CN", "checked_at": "2026-12-04"}
    assert data["request_id"] == "r1"
    json.dumps(data)


@pytest.mark.parametrize(
    "decision",
    [
        decide(replace(REQUEST, document=None), FOUND, PROD),
        decide(replace(REQUEST, traits=replace(DESK, sex="F")), FOUND, PROD),
        decide(
            REQUEST, replace(FOUND, active=replace(ACTIVE, key="88")), PROD
        ),
        decide(REQUEST, SearchResult("01", "x"), PROD),
        rejection(REQUEST, "douteuse"),
        failure(REQUEST, "timeout"),
    ],
)
def test_no_ins_travels_unless_qualified(decision: Decision) -> None:
    """Neither the active nor any historical INS, whatever the outcome."""
    data = data_for(decision)

    assert data["status"] != "QUAL"
    assert data["ins"] is None
    assert data["history"] == []
    assert "109076322083489" not in json.dumps(data)
    assert "209076322083439" not in json.dumps(data)


def test_a_mismatch_reports_fields_and_what_insi_returned() -> None:
    """A human resolves it from the mismatched fields and the traits."""
    decision = decide(
        replace(REQUEST, traits=replace(DESK, birth_date="2009-07-15")),
        FOUND,
        PROD,
    )

    data = data_for(decision)

    assert data["mismatched"] == ["birth_date"]
    assert data["reason"] == "traits_mismatch"
    assert data["traits"] is not None


def test_an_unqualified_event_says_the_new_status_without_ins() -> None:
    """Receivers delete the INS they hold."""
    previous = IdentityState(
        IdentityStatus.QUAL, InsIdentifier(ACTIVE.ins, ACTIVE.oid)
    )
    decision = decide(replace(REQUEST, document=None), FOUND, PROD)

    data = data_for(decision, previous, IdentityEvent.UNQUALIFIED)

    assert data["status"] == "RECUP"
    assert data["ins"] is None
    assert "ins_changed" not in data


def test_an_ins_changed_event_carries_old_and_new() -> None:
    """The requester's outdated INS and the active one."""
    request_ = replace(REQUEST, ins=SuppliedIns(OLD.ins, OLD.oid))
    decision = decide(request_, FOUND, PROD)

    data = data_for(decision, None, IdentityEvent.INS_CHANGED)

    assert data["ins_changed"] == {
        "old": {"value": OLD.ins, "oid": OLD.oid, "type": "INS-NIR"},
        "new": {"value": ACTIVE.ins, "oid": ACTIVE.oid, "type": "INS-NIR"},
    }
    assert data["supplied_ins"] == "historical"
    assert "ins_changed" not in data_for(decision, None)


def test_a_refusal_on_a_qualified_identity_reports_it_unchanged() -> None:
    """The identity part is the kept state; the outcome part the refusal."""
    previous, _ = transition(
        None, decide(REQUEST, FOUND, PROD, called_at=CALLED_AT)
    )
    decision = rejection(REQUEST, "unsupported_characters")

    data = data_for(decision, previous)

    assert data["outcome"] == "rejected"
    assert data["reason"] == "unsupported_characters"
    assert data["status"] == "QUAL"
    assert data["ins"] == {
        "value": ACTIVE.ins,
        "oid": ACTIVE.oid,
        "type": "INS-NIR",
    }
    assert data["insi"] == {
        "called_at": "2026-12-04T08:15:03Z",
        "cr_code": None,
    }


def test_a_failure_without_state_is_minimal() -> None:
    """No identity known: provisional, no traits, the reason."""
    data = data_for(failure(None, "timeout"))

    assert (data["status"], data["traits"], data["insi"]) == (
        "PROV",
        None,
        None,
    )
    assert data["reason"] == "timeout"


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 12, 4, 8, 15, 3), "2026-12-04T08:15:03Z"),
        (
            datetime(
                2026, 12, 4, 9, 15, 3, tzinfo=timezone(timedelta(hours=1))
            ),
            "2026-12-04T08:15:03Z",
        ),
    ],
)
def test_the_insi_call_date_is_utc(moment: datetime, expected: str) -> None:
    """Naive times are UTC; others are converted."""
    data = data_for(decide(REQUEST, FOUND, PROD, called_at=moment))

    assert data["insi"] == {"called_at": expected, "cr_code": "00"}
