"""From a decision to stored rows: outcome, identity state, events.

The identity rules (``worker.domain``) decide; this module stores what
they decided, in the transaction that holds the identity's row lock, so
that two requests about one patient cannot both read the same state and
both publish a change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any

import asyncpg

from worker import events
from worker.domain.checks import SearchTraits, check_request
from worker.domain.identity import IdentityState, transition
from worker.domain.ins import InsIdentifier, accepted_oids
from worker.domain.outcome import (
    Decision,
    HistoricalIns,
    decide,
    failure,
    rejection,
)
from worker.domain.payload import event_data
from worker.domain.request import DocumentCheck, VerificationRequest
from worker.domain.status import IdentityStatus
from worker.errors import RequestRefused
from worker.insi.model import (
    Exchange,
    ReturnedIns,
    ReturnedTraits,
    SearchResult,
    TraitsSearch,
)
from worker.insi.strategy import search_with_first_names
from worker.settings import Settings
from worker.store import inbox
from worker.store.inbox import IdentityChange, IdentityRow

logger = logging.getLogger(__name__)

Call = Callable[[TraitsSearch], Awaitable[SearchResult]]


class OutcomeRecorder:
    """Applies the identity rules around INSi and stores their verdict."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool[Any],
        *,
        on_commit: Callable[[], None] = lambda: None,
        certificate: str | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._on_commit = on_commit
        self.certificate = certificate
        self._accepted = accepted_oids(
            settings.environment, settings.accepted_oids
        )

    def prepare(self, request: VerificationRequest) -> SearchTraits:
        """The checks made before any INSi call (raises RequestRefused)."""
        return check_request(request, self._accepted)

    async def search(self, traits: SearchTraits, call: Call) -> SearchResult:
        """The first-name strategy of the contract, through ``call``."""
        outcome = await search_with_first_names(
            call, traits.search(with_birth_place=True)
        )
        return outcome.result

    async def refused(
        self,
        request: VerificationRequest,
        error: RequestRefused,
        delivery: int,
    ) -> None:
        """Store a refusal made before INSi."""
        await self._record(
            request,
            rejection(request, error.reason),
            delivery,
            (),
            detail=error.detail,
        )

    async def failed(
        self,
        request: VerificationRequest,
        delivery: int,
        reason: str,
        fault_code: str | None,
        exchanges: Sequence[Exchange],
    ) -> None:
        """Store a terminal failure of the INSi calls."""
        called_at = exchanges[-1].started_at if exchanges else None
        decision = failure(request, reason, called_at=called_at)
        await self._record(
            request, decision, delivery, exchanges, detail=fault_code
        )

    async def decided(
        self,
        request: VerificationRequest,
        result: SearchResult,
        delivery: int,
        exchanges: Sequence[Exchange],
    ) -> str:
        """Decide on INSi's final answer and store it; return the outcome."""
        called_at = exchanges[-1].started_at if exchanges else None
        decision = decide(request, result, self._accepted, called_at=called_at)
        await self._record(request, decision, delivery, exchanges)
        return decision.outcome.value

    async def rejected_message(
        self, request_id: str, reason: str, detail: str, digest: bytes
    ) -> None:
        """Store the refusal of a body that is not a valid request.

        Only its id could be read: no requester, no patient, no identity.
        """
        data = event_data(
            "rejected", request_id, rejection(None, reason), None
        )
        data.pop("request_id", None)
        data["detail"] = detail
        event = events.build(
            "rejected",
            events.Requester(request_id, None, None),
            data,
            source=self._settings.event_source,
        )
        stored = await inbox.record_outcome(
            self._pool,
            request_id=request_id,
            delivery=1,
            outcome="rejected",
            reason=reason,
            result=data,
            events=[event],
            known=False,
            digest=digest,
        )
        if stored:
            self._on_commit()

    async def _record(
        self,
        request: VerificationRequest,
        decision: Decision,
        delivery: int,
        exchanges: Sequence[Exchange],
        detail: str | None = None,
    ) -> None:
        requester = events.Requester(
            request.request_id,
            request.source,
            request.patient_ref,
            request.correlation_id,
        )
        summary: dict[str, Any] = {}
        if detail is None and decision.problems:
            # Which check an anomaly failed: codes only, never values.
            detail = ",".join(decision.problems)

        def update(stored: IdentityRow | None) -> IdentityChange:
            previous = state_from_row(stored) if stored else None
            state, added = transition(previous, decision)
            kinds = [decision.outcome.value, *added]
            built = []
            for kind in kinds:
                data = event_data(
                    kind, request.request_id, decision, state, previous
                )
                data.pop("request_id", None)
                if detail is not None and kind == decision.outcome.value:
                    data["detail"] = detail
                built.append(
                    events.build(
                        kind,
                        requester,
                        data,
                        source=self._settings.event_source,
                    )
                )
                if kind == decision.outcome.value:
                    summary.update(data)
            row = None
            if state is not None and state is not previous:
                row = row_from_state(request, state)
            return IdentityChange(row, changes(previous, state), built)

        stored = await inbox.record_outcome(
            self._pool,
            request_id=request.request_id,
            delivery=delivery,
            outcome=decision.outcome.value,
            reason=decision.reason,
            result=summary,
            exchanges=exchanges,
            identity_key=(request.source, request.patient_ref),
            identity_update=update,
            certificate=self.certificate,
            correlation_id=request.correlation_id,
        )
        if stored:
            self._on_commit()
        else:
            logger.info(
                "outcome_already_stored request_id=%s attempt=%d",
                request.request_id,
                delivery,
            )


def changes(
    previous: IdentityState | None, state: IdentityState | None
) -> list[str]:
    """What differs between two states, as codes for identity_changes."""
    if state is None or state is previous:
        return []
    if previous is None:
        return ["created"]
    found = []
    if previous.status is not state.status:
        found.append("status")
    if previous.ins != state.ins:
        found.append("ins")
    if previous.traits != state.traits:
        found.append("traits")
    if previous.history != state.history:
        found.append("history")
    if previous.document != state.document:
        found.append("document")
    return found


def row_from_state(
    request: VerificationRequest, state: IdentityState
) -> IdentityRow:
    """The ``identities`` row of a state."""
    document = state.document
    return IdentityRow(
        source=request.source,
        patient_ref=request.patient_ref,
        status=state.status.value,
        ins=state.ins.value if state.ins else None,
        oid=state.ins.oid if state.ins else None,
        ins_type=state.ins_type,
        history=[_history_json(h) for h in state.history],
        traits=_traits_json(state.traits) if state.traits else None,
        document_type=document.type if document else None,
        document_checked_at=_date(document.checked_at) if document else None,
        insi_called_at=state.called_at,
    )


def state_from_row(row: IdentityRow) -> IdentityState:
    """The state a stored row holds."""
    traits = row.traits
    return IdentityState(
        status=IdentityStatus(row.status),
        ins=(
            InsIdentifier(row.ins, row.oid)
            if row.ins is not None and row.oid is not None
            else None
        ),
        history=tuple(
            HistoricalIns(
                ReturnedIns(
                    h["nir13"],
                    h.get("key"),
                    h["oid"],
                    h.get("type"),
                    h.get("start"),
                    h.get("end"),
                ),
                tuple(h.get("problems", ())),
            )
            for h in row.history
        ),
        traits=ReturnedTraits(**traits) if traits else None,
        document=(
            DocumentCheck(
                row.document_type,
                row.document_checked_at.isoformat()
                if row.document_checked_at
                else "",
            )
            if row.document_type
            else None
        ),
        called_at=row.insi_called_at,
    )


def _history_json(entry: HistoricalIns) -> dict[str, Any]:
    ins = entry.ins
    return {
        "nir13": ins.nir13,
        "key": ins.key,
        "oid": ins.oid,
        "type": ins.type,
        "start": ins.start,
        "end": ins.end,
        "problems": list(entry.problems),
    }


def _traits_json(traits: ReturnedTraits) -> dict[str, Any]:
    return {
        "birth_name": traits.birth_name,
        "first_name_sent": traits.first_name_sent,
        "first_names_list": traits.first_names_list,
        "sex": traits.sex,
        "birth_date": traits.birth_date,
        "birth_place": traits.birth_place,
    }


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
