"""The ``data`` of identity events, built from a decision and its state.

One shape for every event type. The identity part describes the
identity as the outcome leaves it; for an outcome that keeps the state
(``failed``, most ``rejected``) that is the unchanged previous state.

The INS (``ins``, ``history``, and ``ins_changed``'s old and new) is
present only when that status is ``QUAL``: an INS never travels with an
identity that is not qualified. Historical INS failing their checks are
kept in the state but never published.

Traits are the registry's, exactly as returned; for a ``mismatch`` they
are what INSi returned for the desk's traits, for a human to resolve.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.domain.identity import (
    IdentityEvent,
    IdentityState,
    keeps_state,
    replaced_ins,
)
from worker.domain.ins import InsIdentifier
from worker.domain.outcome import Decision, HistoricalIns
from worker.domain.request import DocumentCheck
from worker.domain.status import IdentityStatus
from worker.insi.model import ReturnedTraits


def _timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # Naive datetimes are taken as UTC: the worker only makes UTC ones.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def ins_data(ins: InsIdentifier) -> dict[str, Any]:
    """An INS as events carry it."""
    return {"value": ins.value, "oid": ins.oid, "type": ins.type}


def _history_data(history: tuple[HistoricalIns, ...]) -> list[Any]:
    return [
        {
            **ins_data(entry.identifier),
            "start": entry.ins.start,
            "end": entry.ins.end,
        }
        for entry in history
        if entry.valid
    ]


def traits_data(traits: ReturnedTraits) -> dict[str, Any]:
    """The registry's traits, as returned; ``first_name`` derived."""
    return {
        "birth_name": traits.birth_name,
        "first_name": traits.first_name,
        "first_names": traits.first_names_list,
        "sex": traits.sex,
        "birth_date": traits.birth_date,
        "birth_place": traits.birth_place,
    }


def _document_data(document: DocumentCheck | None) -> Any:
    if document is None:
        return None
    return {"type": document.type, "checked_at": document.checked_at}


def event_data(
    event_type: str,
    request_id: str,
    decision: Decision,
    state: IdentityState | None,
    previous: IdentityState | None = None,
) -> dict[str, Any]:
    """The ``data`` of the ``event_type`` event for this outcome.

    ``state`` is the one ``transition`` returned, ``previous`` the one
    before (needed for ``ins_changed``'s old INS).
    """
    kept = keeps_state(decision)
    status = state.status if kept and state else decision.status
    qualified = (
        status is IdentityStatus.QUAL
        and state is not None
        and state.ins is not None
    )
    traits = decision.traits
    document = decision.document
    if kept and state is not None:
        traits = traits or state.traits
        document = document or state.document

    data: dict[str, Any] = {
        "request_id": request_id,
        "outcome": decision.outcome.value,
        "status": status.value,
        "ins": None,
        "history": [],
        "traits": None if traits is None else traits_data(traits),
        "document": _document_data(document),
        "insi": None,
        "reason": decision.reason,
        "mismatched": list(decision.mismatched),
        "supplied_ins": (
            None
            if decision.supplied_verdict is None
            else decision.supplied_verdict.value
        ),
    }
    if qualified and state is not None and state.ins is not None:
        data["ins"] = ins_data(state.ins)
        data["history"] = _history_data(state.history)
    if decision.cr_code is not None or decision.called_at is not None:
        data["insi"] = {
            "called_at": _timestamp(decision.called_at),
            "cr_code": decision.cr_code,
        }
    elif kept and state is not None and state.called_at is not None:
        # No call this time: the date of the call behind the state.
        data["insi"] = {
            "called_at": _timestamp(state.called_at),
            "cr_code": None,
        }

    old = replaced_ins(previous, decision)
    if event_type == IdentityEvent.INS_CHANGED and qualified and old:
        new = decision.active_identifier
        data["ins_changed"] = {
            "old": ins_data(old),
            "new": None if new is None else ins_data(new),
        }
    return data
