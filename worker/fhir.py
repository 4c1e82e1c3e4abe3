"""FHIR R4 FR Core ``Patient`` rendering of an identity event's data.

A qualified identity renders with the ``fr-core-patient-ins`` profile and
its INS identifiers; any other with the plain ``fr-core-patient`` profile
and no INS at all. Choices where FR Core leaves room:

- the active INS has ``use`` ``official``, except an INS-NIA, which the
  profile fixes to ``temp``; valid historical INS have ``use`` ``old``;
- the birth place is an INSEE code in ``TRE-R13-CommuneOM``; a ``99``
  code (born abroad, INSEE country code) is not in that code system, so
  it goes without a system;
- a birth date with an unknown day or month (``00``, "lunar" dates of
  the registry) becomes the partial FHIR date it really is;
- the reliability extension carries the method ``INSI`` for statuses
  obtained from INSi (``RECUP``, ``QUAL``), the date of the INSi call
  when there was one, and the document (validation mode and date) for
  validated statuses (``VALI``, ``QUAL``), when its code is one of FR
  Core's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from worker.domain.status import IdentityStatus, StatusFormat, status_code

_FR_CORE = "https://hl7.fr/ig/fhir/core"
PROFILE_PATIENT = f"{_FR_CORE}/StructureDefinition/fr-core-patient"
PROFILE_PATIENT_INS = f"{_FR_CORE}/StructureDefinition/fr-core-patient-ins"
EXT_RELIABILITY = (
    f"{_FR_CORE}/StructureDefinition/fr-core-identity-reliability"
)
EXT_BIRTH_LIST_GIVEN_NAME = (
    f"{_FR_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name"
)
EXT_INSEE_CODE = f"{_FR_CORE}/StructureDefinition/fr-core-address-insee-code"
EXT_BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
CS_IDENTIFIER_TYPE = f"{_FR_CORE}/CodeSystem/fr-core-cs-v2-0203"
CS_IDENTITY_STATUS = f"{_FR_CORE}/CodeSystem/fr-core-cs-identity-status"
CS_IDENTITY_STATUS_LEGACY = f"{_FR_CORE}/CodeSystem/fr-core-cs-v2-0445"
CS_METHOD_COLLECTION = f"{_FR_CORE}/CodeSystem/fr-core-cs-method-collection"
CS_VALIDATION_MODE = (
    f"{_FR_CORE}/CodeSystem/fr-core-cs-mode-validation-identity"
)
CS_INSEE_COMMUNE = (
    "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
)

#: the codes of FR Core's validation mode code system
_VALIDATION_MODES = frozenset(
    {"CN", "PA", "CS", "eCN", "IN", "AV", "LECV", "AN", "LEP", "CC", "ANCV"}
)
_NIA_TYPE = "INS-NIA"
_GENDER = {"M": "male", "F": "female"}
_FROM_INSI = (IdentityStatus.RECUP, IdentityStatus.QUAL)
_VALIDATED = (IdentityStatus.VALI, IdentityStatus.QUAL)

_LUNAR_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def fhir_date(value: str | None) -> str | None:
    """A registry date as a FHIR date, partial when day or month is 00."""
    if value is None:
        return None
    found = _LUNAR_DATE.fullmatch(value.strip())
    if found is None:
        return None
    year, month, day = found.groups()
    try:
        if month == "00":
            return year
        if day == "00":
            date(int(year), int(month), 1)
            return f"{year}-{month}"
        return date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


def _identifier(ins: Mapping[str, Any], use: str) -> dict[str, Any]:
    return {
        "use": use,
        "type": {
            "coding": [{"system": CS_IDENTIFIER_TYPE, "code": ins["type"]}]
        },
        "system": f"urn:oid:{ins['oid']}",
        "value": ins["value"],
    }


def _identifiers(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    ins = data.get("ins")
    if not ins:
        return []
    use = "temp" if ins.get("type") == _NIA_TYPE else "official"
    identifiers = [_identifier(ins, use)]
    identifiers += [_identifier(old, "old") for old in data["history"]]
    return identifiers


def _reliability(
    data: Mapping[str, Any],
    status: IdentityStatus,
    status_format: StatusFormat,
) -> dict[str, Any]:
    system = (
        CS_IDENTITY_STATUS
        if status_format is StatusFormat.FR_CORE
        else CS_IDENTITY_STATUS_LEGACY
    )
    parts: list[dict[str, Any]] = [
        {
            "url": "identityStatus",
            "valueCoding": {
                "system": system,
                "code": status_code(status, status_format),
            },
        }
    ]
    if status in _FROM_INSI:
        parts.append(
            {
                "url": "methodCollection",
                "valueCoding": {
                    "system": CS_METHOD_COLLECTION,
                    "code": "INSI",
                },
            }
        )
    called = fhir_date(((data.get("insi") or {}).get("called_at") or "")[:10])
    if called:
        parts.append({"url": "dateInterrogationINSi", "valueDate": called})

    document = data.get("document") or {}
    checked = fhir_date((document.get("checked_at") or "")[:10])
    mode = document.get("type")
    if status in _VALIDATED and mode in _VALIDATION_MODES and checked:
        parts.append(
            {
                "url": "validationMode",
                "valueCoding": {"system": CS_VALIDATION_MODE, "code": mode},
            }
        )
        parts.append({"url": "validationDate", "valueDate": checked})
    return {"url": EXT_RELIABILITY, "extension": parts}


def _birth_place(code: str) -> dict[str, Any]:
    coding: dict[str, Any] = {"code": code}
    if not code.startswith("99"):
        coding = {"system": CS_INSEE_COMMUNE, "code": code}
    return {
        "url": EXT_BIRTH_PLACE,
        "valueAddress": {
            "extension": [{"url": EXT_INSEE_CODE, "valueCoding": coding}]
        },
    }


def _name(traits: Mapping[str, Any]) -> dict[str, Any]:
    name: dict[str, Any] = {"use": "official"}
    if traits.get("first_names"):
        name["extension"] = [
            {
                "url": EXT_BIRTH_LIST_GIVEN_NAME,
                "valueString": traits["first_names"],
            }
        ]
    if traits.get("birth_name"):
        name["family"] = traits["birth_name"]
    if traits.get("first_name"):
        name["given"] = [traits["first_name"]]
    return name


def patient_resource(
    data: Mapping[str, Any],
    *,
    status_format: StatusFormat = StatusFormat.FR_CORE,
) -> dict[str, Any]:
    """The FR Core ``Patient`` for an event's ``data``."""
    status = IdentityStatus(data["status"])
    identifiers = _identifiers(data)
    profile = PROFILE_PATIENT_INS if identifiers else PROFILE_PATIENT

    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"profile": [profile]},
        "extension": [_reliability(data, status, status_format)],
    }
    if identifiers:
        patient["identifier"] = identifiers

    traits = data.get("traits")
    if not traits:
        return patient
    if traits.get("birth_place"):
        patient["extension"].append(_birth_place(traits["birth_place"]))
    patient["name"] = [_name(traits)]
    if traits.get("sex"):
        patient["gender"] = _GENDER.get(traits["sex"], "unknown")
    birth_date = fhir_date(traits.get("birth_date"))
    if birth_date:
        patient["birthDate"] = birth_date
    return patient
