"""The INS identifier: matricule, key, OID and identifier type.

The matricule is checked by ``check_ins`` in both directions (an INS a
requesting system supplies, an INS INSi returns) and answers with
machine-readable reason codes, never with the value itself:

``length``, ``format``
    not 15 characters; characters outside digits and ``2A``/``2B``
``sex_digit``, ``month``, ``departement``
    what ``stdnum.fr.nir`` does not check (see ``departement_ok``)
``key``
    the mod-97 key, checked by ``stdnum.fr.nir``
``oid_unknown``, ``oid_not_accepted``
    not an INS OID; an INS OID this environment refuses
``type_mismatch``
    (returned INS only) ``TypeMatricule`` contradicts the OID

Which OIDs an environment accepts is our reading of "test OIDs are refused
in production, production OIDs are refused in test environments", see
``DEFAULT_ACCEPTED_OIDS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from stdnum.exceptions import InvalidChecksum, ValidationError
from stdnum.fr import nir

from worker.errors import ConfigurationError

if TYPE_CHECKING:
    # worker.insi.model imports this module for key_is_valid.
    from worker.insi.model import ReturnedIns


class InsOid(StrEnum):
    """OIDs of the INS assigning authorities."""

    NIR = "1.2.250.1.213.1.4.8"
    NIA = "1.2.250.1.213.1.4.9"
    NIR_TEST = "1.2.250.1.213.1.4.10"
    NIR_DEMO = "1.2.250.1.213.1.4.11"


#: FHIR FR Core / HL7 identifier type code for each OID
INS_TYPE_BY_OID: dict[str, str] = {
    InsOid.NIR: "INS-NIR",
    InsOid.NIA: "INS-NIA",
    InsOid.NIR_TEST: "INS-NIR-TEST",
    InsOid.NIR_DEMO: "INS-NIR-DEMO",
}

#: what a ``TypeMatricule`` of INSi may say, per OID, when it says NIR/NIA
_MATRICULE_KIND_BY_OID: dict[str, str] = {
    InsOid.NIR: "NIR",
    InsOid.NIA: "NIA",
    InsOid.NIR_TEST: "NIR",
    InsOid.NIR_DEMO: "NIR",
}


class Environment(StrEnum):
    """Where the worker runs; decides which INS OIDs it accepts."""

    DEMO = "demo"
    TEST = "test"
    QUALIFICATION = "qualification"
    PRODUCTION = "production"


#: Our reading of the per-environment rule:
#:
#: - production takes real identities only: INS-NIR and INS-NIA;
#: - qualification talks to the Cnam's qualification service, whose test
#:   persons come back with the production OIDs (every genuine response of
#:   the kit carries ``.8``), so it takes those and the test OID;
#: - test and demo never see a real number: test and demo OIDs only (a
#:   demo platform also shows the public test persons, ``.10``).
DEFAULT_ACCEPTED_OIDS: dict[Environment, frozenset[str]] = {
    Environment.PRODUCTION: frozenset({InsOid.NIR, InsOid.NIA}),
    Environment.QUALIFICATION: frozenset(
        {InsOid.NIR, InsOid.NIA, InsOid.NIR_TEST}
    ),
    Environment.TEST: frozenset({InsOid.NIR_TEST, InsOid.NIR_DEMO}),
    Environment.DEMO: frozenset({InsOid.NIR_TEST, InsOid.NIR_DEMO}),
}

_NON_PRODUCTION_OIDS = frozenset({InsOid.NIR_TEST, InsOid.NIR_DEMO})

# 5 digits, the département (2 digits or Corsica's letters), 8 digits
_SHAPE = re.compile(r"[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{8}")


@dataclass(frozen=True, slots=True)
class InsIdentifier:
    """An INS as it travels: the 15-character matricule and its OID."""

    value: str
    oid: str

    @property
    def type(self) -> str | None:
        """The identifier type (``INS-NIR``...), ``None`` if OID unknown."""
        return INS_TYPE_BY_OID.get(self.oid)


def _as_number(nir13: str) -> int:
    # Corsica: the département letters are replaced before the modulo.
    digits = nir13.upper().replace("2A", "19").replace("2B", "18")
    return int(digits)


def compute_key(nir13: str) -> str:
    """The two-digit key of a 13-character matricule."""
    return f"{97 - _as_number(nir13) % 97:02d}"


def key_is_valid(nir13: str, key: str) -> bool:
    """Whether ``key`` is the mod-97 key of ``nir13``; never raises."""
    if len(nir13) != 13 or len(key) != 2 or not key.isdigit():
        return False
    try:
        return compute_key(nir13) == key
    except ValueError:
        return False


def ins_type(oid: str) -> str | None:
    """The identifier type for an OID, ``None`` when it is no INS OID."""
    return INS_TYPE_BY_OID.get(oid)


def accepted_oids(
    environment: str,
    override: tuple[str, ...] = (),
) -> frozenset[str]:
    """The INS OIDs the worker accepts in ``environment``.

    ``override``, when not empty, replaces the default set entirely. It
    must name INS OIDs only, and can never let test or demo OIDs into
    production: both are configuration errors.
    """
    try:
        env = Environment(environment)
    except ValueError:
        raise ConfigurationError(
            f"unknown environment {environment!r}"
        ) from None

    if not override:
        return DEFAULT_ACCEPTED_OIDS[env]

    chosen = frozenset(override)
    unknown = sorted(chosen - INS_TYPE_BY_OID.keys())
    if unknown:
        raise ConfigurationError(f"not INS OIDs: {', '.join(unknown)}")
    if env is Environment.PRODUCTION and chosen & _NON_PRODUCTION_OIDS:
        raise ConfigurationError(
            "test and demo OIDs are never accepted in production"
        )
    return chosen


def departement_ok(departement: str, place: str) -> bool:
    """Whether a département code fits the commune/country code after it.

    Shared by the matricule and the INSEE birth-place code: ``2A``/``2B``
    (Corsica), ``01``-``96`` (``20`` is Corsica before 1976, ``91``-``96``
    also North Africa before independence), ``97`` then 1-8 (971
    Guadeloupe ... 978 Saint-Martin), ``98`` then 4-9 (984 ... 989; 985
    was Mayotte before 976), ``99`` then a country code (100 and up).
    """
    if departement in ("2A", "2B"):
        return True
    if not departement.isdigit() or departement == "00":
        return False
    # A tuple, not a string: "" must not count as a member.
    first = place[:1]
    if departement == "97":
        return first in tuple("12345678")
    if departement == "98":
        return first in tuple("456789")
    if departement == "99":
        return first in tuple("123456789")
    return True


def matricule_problems(value: str) -> list[str]:
    """Reason codes against the 15 characters alone (empty = valid)."""
    if len(value) != 15:
        return ["length"]
    if not _SHAPE.fullmatch(value):
        # Also refuses what stdnum would silently clean: lowercase
        # letters, spaces and dots.
        return ["format"]

    problems: list[str] = []
    if value[0] not in "12":
        problems.append("sex_digit")
    month = int(value[3:5])
    if not (1 <= month <= 12 or 20 <= month <= 99):
        problems.append("month")
    if not departement_ok(value[5:7], value[7:10]):
        problems.append("departement")

    try:
        nir.validate(value)
    except InvalidChecksum:
        problems.append("key")
    except ValidationError:
        problems.append("format")
    return problems


def oid_problems(oid: str, accepted: frozenset[str]) -> list[str]:
    """Reason codes against the OID (empty = an accepted INS OID)."""
    if oid not in INS_TYPE_BY_OID:
        return ["oid_unknown"]
    if oid not in accepted:
        return ["oid_not_accepted"]
    return []


def check_ins(
    value_15: str,
    oid: str,
    accepted: frozenset[str],
) -> list[str]:
    """Every reason ``value_15`` with ``oid`` is not a valid INS here."""
    return matricule_problems(value_15) + oid_problems(oid, accepted)


def check_returned_ins(
    ins: ReturnedIns,
    accepted: frozenset[str],
) -> list[str]:
    """Every reason an INS returned by INSi cannot be trusted.

    The returned key is never trusted; a ``TypeMatricule`` saying NIR or
    NIA must agree with the OID (other values are not documented, so
    they are not judged).
    """
    if len(ins.nir13) != 13 or len(ins.key or "") != 2:
        problems = ["length"]
    else:
        problems = matricule_problems(ins.ins)
    problems += oid_problems(ins.oid, accepted)

    kind = (ins.type or "").strip().upper()
    expected = _MATRICULE_KIND_BY_OID.get(ins.oid)
    if kind in ("NIR", "NIA") and expected and kind != expected:
        problems.append("type_mismatch")
    return problems
