"""The identity state per requesting system and patient, and its changes.

``transition`` gives the state an outcome leaves and the events it adds
to the outcome's own event:

- ``qualified``, ``retrieved``: the state takes INSi's answer (INS,
  history, traits as returned, document, call date);
- ``not_found``, ``ambiguous``, ``anomaly``, ``mismatch``: INSi did not
  confirm this identity, so the state keeps no INS, no history and no
  registry traits (the raw answer stays in the audit trail), with the
  decision's status (``VALI`` or ``PROV``; ``PROV`` for a mismatch);
- ``rejected`` because the identity is ``douteuse`` or ``fictive``, or
  its birth date was corrected: the same, status ``PROV``, since such an
  identity can never be qualified;
- ``failed``, and ``rejected`` for any other reason (a request INSi could
  not take says nothing about the identity): the previous state is kept
  unchanged and no event is added.

Added events:

- ``unqualified`` when the previous status was ``QUAL`` and the new one
  is not, so that receivers delete the INS they hold;
- ``ins_changed`` (with old and new, see ``replaced_ins``) when the new
  status is ``QUAL`` and the INS receivers may hold is outdated: the
  previous state was qualified with another INS, or the requesting
  system supplied an INS that INSi lists as historical. An INS only ever
  travels with a qualified identity, so there is no ``ins_changed``
  towards a status other than ``QUAL`` (``unqualified`` covers a
  qualified identity losing its INS).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from worker.domain.ins import InsIdentifier
from worker.domain.outcome import (
    Decision,
    HistoricalIns,
    OutcomeType,
    SuppliedVerdict,
)
from worker.domain.request import DocumentCheck
from worker.domain.status import IdentityStatus
from worker.insi.model import ReturnedTraits


class IdentityEvent(StrEnum):
    """Events a transition adds to the outcome's own event."""

    INS_CHANGED = "ins_changed"
    UNQUALIFIED = "unqualified"


#: refusals that say the identity itself can never be qualified
DOWNGRADING_REFUSALS: frozenset[str] = frozenset(
    {"douteuse", "fictive", "birth_date_corrected"}
)


@dataclass(frozen=True, slots=True)
class IdentityState:
    """What the worker holds for one (requesting system, patient) pair.

    ``ins`` carries the matricule and OID (its ``type`` derives from the
    OID); ``traits`` are the registry's, exactly as returned;
    ``called_at`` is when the INSi call behind this state was made.
    """

    status: IdentityStatus
    ins: InsIdentifier | None = None
    history: tuple[HistoricalIns, ...] = ()
    traits: ReturnedTraits | None = None
    document: DocumentCheck | None = None
    called_at: datetime | None = None

    @property
    def ins_type(self) -> str | None:
        """The identifier type of the INS (``INS-NIR``...)."""
        return None if self.ins is None else self.ins.type


def keeps_state(decision: Decision) -> bool:
    """Whether ``decision`` leaves the previous state untouched."""
    if decision.outcome is OutcomeType.FAILED:
        return True
    return (
        decision.outcome is OutcomeType.REJECTED
        and decision.reason not in DOWNGRADING_REFUSALS
    )


def _is_qualified(state: IdentityState | None) -> bool:
    return state is not None and state.status is IdentityStatus.QUAL


def _new_state(decision: Decision) -> IdentityState:
    active = decision.active_identifier
    confirmed = decision.outcome in (
        OutcomeType.QUALIFIED,
        OutcomeType.RETRIEVED,
    )
    if confirmed and active is not None:
        return IdentityState(
            status=decision.status,
            ins=active,
            history=decision.history,
            traits=decision.traits,
            document=decision.document,
            called_at=decision.called_at,
        )
    return IdentityState(
        status=decision.status,
        document=decision.document,
        called_at=decision.called_at,
    )


def replaced_ins(
    previous: IdentityState | None,
    decision: Decision,
) -> InsIdentifier | None:
    """The outdated INS an ``ins_changed`` event replaces, if any.

    The previous qualified INS when it differs from the new active one,
    else the supplied INS when INSi lists it as historical; ``None`` when
    the decision does not qualify the identity.
    """
    new = decision.active_identifier
    if decision.outcome is not OutcomeType.QUALIFIED or new is None:
        return None
    if (
        _is_qualified(previous)
        and previous is not None
        and previous.ins is not None
        and previous.ins != new
    ):
        return previous.ins
    supplied = decision.supplied
    if (
        decision.supplied_verdict is SuppliedVerdict.HISTORICAL
        and supplied is not None
    ):
        return InsIdentifier(supplied.value, supplied.oid)
    return None


def transition(
    previous: IdentityState | None,
    decision: Decision,
) -> tuple[IdentityState | None, list[str]]:
    """The state ``decision`` leaves, and the events it adds."""
    if keeps_state(decision):
        return previous, []

    state = _new_state(decision)

    events: list[str] = []
    if replaced_ins(previous, decision) is not None:
        events.append(IdentityEvent.INS_CHANGED)
    if _is_qualified(previous) and not _is_qualified(state):
        events.append(IdentityEvent.UNQUALIFIED)
    return state, events
