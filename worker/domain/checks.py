"""The checks a request passes before any INSi call, and what INSi gets.

``check_request`` refuses with ``RequestRefused`` (reason codes below) or
returns the traits normalised for INSi. Every refusal's detail names the
field, never its value. Checks run in this order and the first failing one
gives the reason:

``douteuse``, ``fictive``
    the identity carries that attribute: it stays provisional and must
    never reach INSi (RNIV)
``birth_date_corrected``
    the desk corrected an exceptional birth date: such an identity can
    never be qualified (our reading: refuse before calling)
``invalid_sex``
    not ``M`` or ``F`` (INSi answers anything else with ``insi_24``)
``impossible_date``
    not ``YYYY-MM-DD``, not a calendar date, before 1850 or in the future
``invalid_birth_place``
    not an INSEE code: 2 digits or ``2A``/``2B``, then 3 digits (``99`` +
    country code abroad), with the département rules of the INS
``unsupported_characters``, ``missing_trait``
    a name INSi cannot take (see ``worker.domain.traits``)
``invalid_document_date``
    a document check whose date is not a date or lies in the future
``supplied_ins_invalid``
    the INS to verify fails ``check_ins``; the detail lists its codes
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from worker.domain.ins import check_ins, departement_ok
from worker.domain.request import DocumentCheck, VerificationRequest
from worker.domain.status import document_date
from worker.domain.traits import normalise_for_insi
from worker.errors import RequestRefused
from worker.insi.model import TraitsSearch

#: no one alive or in a living record was born earlier (our bound)
EARLIEST_BIRTH_DATE = date(1850, 1, 1)

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INSEE_CODE = re.compile(r"(?:[0-9]{2}|2A|2B)[0-9]{3}")

# Attributes compare case-insensitively: the request schema owns spelling.
_BLOCKING_ATTRIBUTES = ("douteuse", "fictive")


@dataclass(frozen=True, slots=True)
class SearchTraits:
    """The request's traits, normalised for INSi, all first names kept."""

    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    birth_place: str | None = None

    def search(
        self,
        first_names: tuple[str, ...] | None = None,
        *,
        with_birth_place: bool = False,
    ) -> TraitsSearch:
        """One INSi search: these ``first_names`` (default: all).

        The birth place goes only when asked, since the first-name
        strategy adds it after a ``02`` only.
        """
        return TraitsSearch(
            birth_name=self.birth_name,
            first_names=(
                self.first_names if first_names is None else first_names
            ),
            sex=self.sex,
            birth_date=self.birth_date,
            birth_place=self.birth_place if with_birth_place else None,
        )


def today_utc() -> date:
    """Today's date in UTC."""
    return datetime.now(UTC).date()


def _latest_local_date(today: date) -> date:
    # The latest civil date anywhere is at most one day past UTC's
    # (UTC+14): a baby born "today" overseas is not in the future.
    return today + timedelta(days=1)


def _check_attributes(req: VerificationRequest) -> None:
    attributes = {a.strip().casefold() for a in req.attributes}
    for attribute in _BLOCKING_ATTRIBUTES:
        if attribute in attributes:
            raise RequestRefused(
                attribute, f"attributes: the identity is {attribute}"
            )


def _check_sex(sex: str) -> str:
    value = sex.strip().upper()
    if value not in ("M", "F"):
        raise RequestRefused("invalid_sex", "traits.sex must be M or F")
    return value


def _check_birth_date(birth_date: str, today: date) -> str:
    value = birth_date.strip()
    if not _ISO_DATE.fullmatch(value):
        raise RequestRefused(
            "impossible_date", "traits.birth_date is not YYYY-MM-DD"
        )
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise RequestRefused(
            "impossible_date", "traits.birth_date is not a calendar date"
        ) from None
    if day < EARLIEST_BIRTH_DATE:
        raise RequestRefused(
            "impossible_date", "traits.birth_date is before 1850"
        )
    if day > _latest_local_date(today):
        raise RequestRefused(
            "impossible_date", "traits.birth_date is in the future"
        )
    return value


def birth_place_ok(code: str) -> bool:
    """Whether ``code`` has the shape and département of an INSEE code."""
    return bool(_INSEE_CODE.fullmatch(code)) and departement_ok(
        code[:2], code[2:]
    )


def _check_birth_place(birth_place: str | None) -> str | None:
    # A blank place is an unknown place: it is optional for INSi.
    if birth_place is None or not birth_place.strip():
        return None
    value = birth_place.strip().upper()
    if not birth_place_ok(value):
        raise RequestRefused(
            "invalid_birth_place",
            "traits.birth_place is not an INSEE commune or country code",
        )
    return value


def _check_document(document: DocumentCheck | None, today: date) -> None:
    if document is None:
        return
    day = document_date(document)
    if day is None or day > _latest_local_date(today):
        raise RequestRefused(
            "invalid_document_date",
            "document.checked_at is not a past date",
        )


def _check_supplied_ins(
    req: VerificationRequest,
    accepted_oids: frozenset[str],
) -> None:
    if req.ins is None:
        return
    problems = check_ins(req.ins.value, req.ins.oid, accepted_oids)
    if problems:
        raise RequestRefused(
            "supplied_ins_invalid", f"ins fails: {', '.join(problems)}"
        )


def check_request(
    req: VerificationRequest,
    accepted_oids: frozenset[str],
    *,
    today: date | None = None,
) -> SearchTraits:
    """Refuse what must not reach INSi; return what INSi gets.

    ``today`` (UTC) is for tests; it defaults to the current date.
    """
    day = today_utc() if today is None else today
    traits = req.traits

    _check_attributes(req)
    if traits.birth_date_corrected:
        raise RequestRefused(
            "birth_date_corrected",
            "traits.birth_date was corrected: never qualifiable",
        )
    sex = _check_sex(traits.sex)
    birth_date = _check_birth_date(traits.birth_date, day)
    birth_place = _check_birth_place(traits.birth_place)

    birth_name = normalise_for_insi(traits.birth_name, "traits.birth_name")
    first_names = tuple(
        normalise_for_insi(name, f"traits.first_names[{i}]")
        for i, name in enumerate(traits.first_names)
    )
    _check_document(req.document, day)
    _check_supplied_ins(req, accepted_oids)

    return SearchTraits(
        birth_name=birth_name,
        first_names=first_names,
        sex=sex,
        birth_date=birth_date,
        birth_place=birth_place,
    )
