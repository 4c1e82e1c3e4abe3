"""What an INSi answer means for one request: the outcome decision.

``decide`` reads a parsed ``RESULTAT`` against the request:

- ``00`` with a trustworthy active INS, complete registry traits that
  match the desk's, and (if one was supplied) a supplied INS found among
  the active or valid historical ones: ``qualified`` when a high-trust
  document was checked, else ``retrieved``;
- ``00`` whose active INS fails its checks (key, format, OID not
  accepted here) or whose traits are incomplete: ``anomaly``, never
  qualified; the caller keeps the raw response;
- ``00`` with traits that disagree, or a supplied INS INSi does not know
  (``supplied_ins_unknown``): ``mismatch``, status ``PROV``;
- ``01``: ``not_found``; ``02``: ``ambiguous``; another code: ``anomaly``.

Outcomes where INSi confirmed nothing (``not_found``, ``ambiguous``,
``anomaly``) keep the document axis: ``VALI`` after a high-trust document
check, else ``PROV``. A ``mismatch`` is always ``PROV``: the desk's traits
contradict the registry, so their document check is in doubt too.

History (``INSHISTO``): an entry repeating the active INS is dropped, as
are repeats; an entry failing its checks is kept and flagged with its
reason codes, and never makes the whole answer an anomaly (our reading:
an old number does not carry the identity, the active one does) — but a
flagged entry never vouches for a supplied INS, and is never published.

``rejection`` and ``failure`` build the decisions for refused requests and
failed calls, so that every outcome goes through ``transition`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from worker.domain.ins import InsIdentifier, check_returned_ins
from worker.domain.request import (
    DocumentCheck,
    SuppliedIns,
    VerificationRequest,
)
from worker.domain.status import IdentityStatus, status_for
from worker.domain.traits import compare
from worker.insi.model import (
    CodeCR,
    ReturnedIns,
    ReturnedTraits,
    SearchResult,
)


class OutcomeType(StrEnum):
    """The terminal outcome of a request, and its main event type."""

    QUALIFIED = "qualified"
    RETRIEVED = "retrieved"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    MISMATCH = "mismatch"
    ANOMALY = "anomaly"
    REJECTED = "rejected"
    FAILED = "failed"


class SuppliedVerdict(StrEnum):
    """Where the INS a requesting system supplied stands at INSi."""

    #: it is the active INS
    ACTIVE = "active"
    #: it is a valid historical INS: outdated, replaced by the active one
    HISTORICAL = "historical"
    #: INSi does not know it for these traits
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class HistoricalIns:
    """An ``INSHISTO`` entry as returned, with the reasons it fails."""

    ins: ReturnedIns
    problems: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        """Whether the entry passed every check."""
        return not self.problems

    @property
    def identifier(self) -> InsIdentifier:
        """The entry as an INS identifier."""
        return InsIdentifier(self.ins.ins, self.ins.oid)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request and everything events need from it.

    ``active`` is the returned active INS (kept even on an anomaly, for
    the audit; ``problems`` then says why it is not trusted).
    ``supplied_verdict`` is ``None`` when no INS was supplied.
    ``called_at`` is when INSi was called, ``None`` when it was not.
    """

    outcome: OutcomeType
    status: IdentityStatus
    reason: str | None = None
    active: ReturnedIns | None = None
    history: tuple[HistoricalIns, ...] = ()
    traits: ReturnedTraits | None = None
    mismatched: tuple[str, ...] = ()
    supplied_verdict: SuppliedVerdict | None = None
    problems: tuple[str, ...] = ()
    cr_code: str | None = None
    document: DocumentCheck | None = None
    supplied: SuppliedIns | None = None
    called_at: datetime | None = None

    @property
    def active_identifier(self) -> InsIdentifier | None:
        """The active INS as an identifier, ``None`` if none returned."""
        if self.active is None:
            return None
        return InsIdentifier(self.active.ins, self.active.oid)

    @property
    def valid_history(self) -> tuple[InsIdentifier, ...]:
        """The historical INS that passed every check."""
        return tuple(h.identifier for h in self.history if h.valid)


def _history(
    result: SearchResult,
    accepted_oids: frozenset[str],
) -> tuple[HistoricalIns, ...]:
    active = result.active
    seen: set[tuple[str, str]] = set()
    if active is not None:
        seen.add((active.ins, active.oid))

    entries: list[HistoricalIns] = []
    for ins in result.history:
        if (ins.ins, ins.oid) in seen:
            continue
        seen.add((ins.ins, ins.oid))
        problems = check_returned_ins(ins, accepted_oids)
        entries.append(HistoricalIns(ins, tuple(problems)))
    return tuple(entries)


def _verdict(
    supplied: SuppliedIns | None,
    active: ReturnedIns | None,
    history: tuple[HistoricalIns, ...],
) -> SuppliedVerdict | None:
    if supplied is None:
        return None
    if active is not None and (supplied.value, supplied.oid) == (
        active.ins,
        active.oid,
    ):
        return SuppliedVerdict.ACTIVE
    for entry in history:
        if entry.valid and (supplied.value, supplied.oid) == (
            entry.ins.ins,
            entry.ins.oid,
        ):
            return SuppliedVerdict.HISTORICAL
    return SuppliedVerdict.UNKNOWN


def _incomplete(traits: ReturnedTraits) -> bool:
    # The four traits a comparison cannot do without; a birth place may
    # be missing.
    return not (
        traits.birth_name
        and traits.first_name
        and traits.sex
        and traits.birth_date
    )


def _decide_found(
    req: VerificationRequest,
    result: SearchResult,
    accepted_oids: frozenset[str],
    called_at: datetime | None,
) -> Decision:
    history = _history(result, accepted_oids)
    answer = Decision(
        OutcomeType.ANOMALY,
        status_for(False, req.document),
        active=result.active,
        history=history,
        traits=result.traits,
        supplied_verdict=_verdict(req.ins, result.active, history),
        cr_code=result.cr_code,
        document=req.document,
        supplied=req.ins,
        called_at=called_at,
    )

    if result.active is None or result.traits is None:
        return replace(answer, reason="incomplete_result")
    problems = tuple(check_returned_ins(result.active, accepted_oids))
    if problems:
        return replace(
            answer, reason="returned_ins_invalid", problems=problems
        )
    if _incomplete(result.traits):
        return replace(answer, reason="incomplete_traits")

    mismatched = tuple(compare(req.traits, result.traits))
    if mismatched:
        return replace(
            answer,
            outcome=OutcomeType.MISMATCH,
            status=IdentityStatus.PROV,
            reason="traits_mismatch",
            mismatched=mismatched,
        )
    if answer.supplied_verdict is SuppliedVerdict.UNKNOWN:
        return replace(
            answer,
            outcome=OutcomeType.MISMATCH,
            status=IdentityStatus.PROV,
            reason="supplied_ins_unknown",
        )

    status = status_for(True, req.document)
    outcome = (
        OutcomeType.QUALIFIED
        if status is IdentityStatus.QUAL
        else OutcomeType.RETRIEVED
    )
    return replace(answer, outcome=outcome, status=status)


def decide(
    req: VerificationRequest,
    result: SearchResult,
    accepted_oids: frozenset[str],
    *,
    called_at: datetime | None = None,
) -> Decision:
    """The outcome of ``req`` given INSi's final answer ``result``.

    ``called_at`` is when that INSi call was made; it is carried to the
    identity state and the events.
    """
    if result.cr_code == CodeCR.FOUND:
        return _decide_found(req, result, accepted_oids, called_at)

    unconfirmed = Decision(
        OutcomeType.ANOMALY,
        status_for(False, req.document),
        reason="unexpected_cr_code",
        supplied_verdict=(
            None if req.ins is None else SuppliedVerdict.UNKNOWN
        ),
        cr_code=result.cr_code,
        document=req.document,
        supplied=req.ins,
        called_at=called_at,
    )
    if result.cr_code == CodeCR.NOT_FOUND:
        return replace(unconfirmed, outcome=OutcomeType.NOT_FOUND, reason=None)
    if result.cr_code == CodeCR.SEVERAL:
        return replace(unconfirmed, outcome=OutcomeType.AMBIGUOUS, reason=None)
    return unconfirmed


def rejection(
    req: VerificationRequest | None,
    reason: str,
) -> Decision:
    """The decision for a request refused before INSi (``reason`` code)."""
    return Decision(
        OutcomeType.REJECTED,
        IdentityStatus.PROV,
        reason=reason,
        document=None if req is None else req.document,
        supplied=None if req is None else req.ins,
    )


def failure(
    req: VerificationRequest | None,
    reason: str,
    *,
    called_at: datetime | None = None,
) -> Decision:
    """The decision for a request whose INSi call failed for good.

    ``reason`` is a bounded code, such as an ``InsiError.kind``.
    """
    return Decision(
        OutcomeType.FAILED,
        IdentityStatus.PROV,
        reason=reason,
        document=None if req is None else req.document,
        supplied=None if req is None else req.ins,
        called_at=called_at,
    )
