"""Values exchanged with INSi, as the contract names them.

French terms of the contract are kept where they are the official ones:
``CodeCR`` is the result code, ``INSACTIF`` the active INS, ``INSHISTO``
an earlier one, ``TIQ`` the registry's traits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from worker.domain.ins import key_is_valid


class CodeCR(StrEnum):
    """The result code of a traits search."""

    FOUND = "00"
    NOT_FOUND = "01"
    SEVERAL = "02"


class Operation(StrEnum):
    """INSi operations the client knows; only the traits search is used."""

    TRAITS_SEARCH = "rechercherInsAvecTraitsIdentite"


@dataclass(frozen=True, slots=True)
class TraitsSearch:
    """One ``RECSANSVITALE`` request, already normalised for INSi.

    ``first_names`` become the ``Prenom`` elements, in order; the
    first-name strategy decides what goes there on each call.
    """

    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    birth_place: str | None = None


@dataclass(frozen=True, slots=True)
class ReturnedIns:
    """An ``INSACTIF`` or ``INSHISTO`` entry exactly as INSi sent it."""

    nir13: str
    key: str | None
    oid: str
    type: str | None = None
    start: str | None = None
    end: str | None = None

    @property
    def ins(self) -> str:
        """The 15-character matricule INS: the 13 characters and the key."""
        return self.nir13 + (self.key or "")

    @property
    def key_valid(self) -> bool:
        """Whether the key satisfies the mod-97 check (never trusted)."""
        return self.key is not None and key_is_valid(self.nir13, self.key)


@dataclass(frozen=True, slots=True)
class ReturnedTraits:
    """The registry's traits (``TIQ``), stored exactly as returned.

    ``first_name`` is ``Prenom`` when INSi sent it (the CNDA dialect) and
    ``None`` otherwise (the live service sends only ``ListePrenom``).
    """

    birth_name: str | None
    first_name_sent: str | None
    first_names_list: str | None
    sex: str | None
    birth_date: str | None
    birth_place: str | None

    @property
    def first_names(self) -> list[str]:
        """The birth first names, split on spaces."""
        return (self.first_names_list or "").split()

    @property
    def first_name(self) -> str | None:
        """The first first-name: ``Prenom`` if given, else the list's head."""
        if self.first_name_sent:
            return self.first_name_sent
        names = self.first_names
        return names[0] if names else None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A parsed ``RESULTAT``."""

    cr_code: str
    cr_label: str
    active: ReturnedIns | None = None
    history: tuple[ReturnedIns, ...] = ()
    traits: ReturnedTraits | None = None


@dataclass(slots=True)
class Exchange:
    """One SOAP exchange with INSi, kept for the audit trail.

    Raw XML is kept exactly as sent and received. ``result`` is set for a
    ``RESULTAT``; ``error_kind``/``fault`` for anything else.
    """

    operation: Operation
    search: TraitsSearch
    message_id: str
    started_at: datetime
    request_xml: bytes
    duration_s: float = 0.0
    http_status: int | None = None
    response_xml: bytes | None = None
    result: SearchResult | None = None
    error_kind: str | None = None
    fault_code: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
