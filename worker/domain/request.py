"""A verification request as the worker understands it, once validated."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DeskTraits:
    """The five traits as entered at the admission desk, unnormalised.

    ``birth_date`` is ``YYYY-MM-DD``; ``birth_date_corrected`` says the
    desk applied the referential's correction for an unknown day or month.
    """

    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    birth_place: str | None = None
    birth_date_corrected: bool = False


@dataclass(frozen=True, slots=True)
class SuppliedIns:
    """An INS the requesting system already holds and wants verified."""

    value: str
    oid: str


@dataclass(frozen=True, slots=True)
class DocumentCheck:
    """The identity document checked at the desk (``CN``, ``PA``...)."""

    type: str
    checked_at: str


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    """One request: who asks, about which local patient, with which traits.

    ``source`` is the requesting system (CloudEvents ``source``),
    ``patient_ref`` its local patient reference (``subject``).
    """

    request_id: str
    source: str
    patient_ref: str
    traits: DeskTraits
    correlation_id: str | None = None
    requested_at: str | None = None
    ins: SuppliedIns | None = None
    document: DocumentCheck | None = None
    attributes: frozenset[str] = field(default_factory=frozenset)
