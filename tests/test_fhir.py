"""The FR Core Patient rendering of identity events."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from worker.domain.identity import IdentityState, transition
from worker.domain.ins import DEFAULT_ACCEPTED_OIDS, Environment, InsOid
from worker.domain.outcome import Decision, decide, rejection
from worker.domain.payload import event_data
from worker.domain.request import (
    DeskTraits,
    DocumentCheck,
    VerificationRequest,
)
from worker.domain.status import StatusFormat
from worker.fhir import (
    CS_IDENTITY_STATUS,
    CS_IDENTITY_STATUS_LEGACY,
    CS_INSEE_COMMUNE,
    EXT_BIRTH_LIST_GIVEN_NAME,
    EXT_BIRTH_PLACE,
    EXT_INSEE_CODE,
    EXT_RELIABILITY,
    PROFILE_PATIENT,
    PROFILE_PATIENT_INS,
    fhir_date,
    patient_resource,
)
from worker.insi.model import ReturnedIns, ReturnedTraits, SearchResult

r4_patient = pytest.importorskip("fhir.resources.R4B.patient")

QUALIF = DEFAULT_ACCEPTED_OIDS[Environment.QUALIFICATION]
CALLED_AT = datetime(2026, 12, 4, 8, 15, 3, tzinfo=UTC)
ACTIVE = ReturnedIns("1090763220834", "89", InsOid.NIR)
OLD = ReturnedIns("2090763220834", "39", InsOid.NIR)
TRAITS = ReturnedTraits(
    "ECETINSI",
    None,
    "PIERRE-ALAIN MURIEL FLORIANT",
    "M",
    "2009-07-14",
    "63220",
)
FOUND = SearchResult("00", "OK", ACTIVE, (OLD,), TRAITS)
DESK = DeskTraits("Ecetinsi", ("Pierre-Alain",), "M", "2009-07-14", "63220")
CN = DocumentCheck("CN", "2026-12-04")
REQUEST = VerificationRequest("r1", "urn:pas", "ipp/1", DESK, document=CN)


@pytest.fixture(scope="module")
def kit_found(insi_kit: Path) -> list[SearchResult]:
    """The kit's 00 answers, as the parser gives them (expected.json)."""
    expected = json.loads((insi_kit / "expected.json").read_text("utf-8"))
    found: list[SearchResult] = []
    for entry in expected.values():
        if not isinstance(entry, dict) or entry.get("cr_code") != "00":
            continue
        ins = [
            ReturnedIns(
                i["nir13"], i["key"], i["oid"], i["type"], i["start"], i["end"]
            )
            for i in [entry["active"], *entry["history"]]
        ]
        t = entry["traits"]
        traits = ReturnedTraits(
            t["NomNaissance"],
            t["Prenom"],
            t["ListePrenom"],
            t["Sexe"],
            t["DateNaissance"],
            t["LieuNaissance"],
        )
        found.append(SearchResult("00", "OK", ins[0], tuple(ins[1:]), traits))
    return found


def render(
    decision: Decision,
    previous: IdentityState | None = None,
    status_format: StatusFormat = StatusFormat.FR_CORE,
) -> dict[str, Any]:
    """The Patient for the decision's main event, validated as R4."""
    state, _ = transition(previous, decision)
    data = event_data(decision.outcome, "r1", decision, state, previous)
    patient = patient_resource(data, status_format=status_format)
    r4_patient.Patient.model_validate(patient)
    return patient


def reliability(patient: dict[str, Any]) -> dict[str, Any]:
    """The identity-reliability sub-extensions by name."""
    (extension,) = [
        e for e in patient["extension"] if e["url"] == EXT_RELIABILITY
    ]
    return {part["url"]: part for part in extension["extension"]}


def test_a_qualified_identity_renders_as_fr_core_patient_ins() -> None:
    """Profile, INS identifiers, name, gender, birth date and place."""
    patient = render(decide(REQUEST, FOUND, QUALIF, called_at=CALLED_AT))

    assert patient["meta"]["profile"] == [PROFILE_PATIENT_INS]
    assert patient["identifier"] == [
        {
            "use": "official",
            "type": {
                "coding": [
                    {
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/"
                        "fr-core-cs-v2-0203",
                        "code": "INS-NIR",
                    }
                ]
            },
            "system": "urn:oid:1.2.250.1.213.1.4.8",
            "value": "109076322083489",
        },
        {
            "use": "old",
            "type": {
                "coding": [
                    {
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/"
                        "fr-core-cs-v2-0203",
                        "code": "INS-NIR",
                    }
                ]
            },
            "system": "urn:oid:1.2.250.1.213.1.4.8",
            "value": "209076322083439",
        },
    ]
    assert patient["name"] == [
        {
            "use": "official",
            "family": "ECETINSI",
            "given": ["PIERRE-ALAIN"],
            "extension": [
                {
                    "url": EXT_BIRTH_LIST_GIVEN_NAME,
                    "valueString": "PIERRE-ALAIN MURIEL FLORIANT",
                }
            ],
        }
    ]
    assert patient["gender"] == "male"
    assert patient["birthDate"] == "2009-07-14"
    (place,) = [e for e in patient["extension"] if e["url"] == EXT_BIRTH_PLACE]
    assert place["valueAddress"]["extension"] == [
        {
            "url": EXT_INSEE_CODE,
            "valueCoding": {"system": CS_INSEE_COMMUNE, "code": "63220"},
        }
    ]


def test_the_reliability_extension_says_status_method_and_document() -> None:
    """QUAL, method INSI, the call date, the document and its date."""
    parts = reliability(
        render(decide(REQUEST, FOUND, QUALIF, called_at=CALLED_AT))
    )

    assert parts["identityStatus"]["valueCoding"] == {
        "system": CS_IDENTITY_STATUS,
        "code": "QUAL",
    }
    assert parts["methodCollection"]["valueCoding"]["code"] == "INSI"
    assert parts["dateInterrogationINSi"]["valueDate"] == "2026-12-04"
    assert parts["validationMode"]["valueCoding"]["code"] == "CN"
    assert parts["validationDate"]["valueDate"] == "2026-12-04"


@pytest.mark.parametrize(
    ("decision", "status", "parts"),
    [
        (
            decide(replace(REQUEST, document=None), FOUND, QUALIF),
            "RECUP",
            {"identityStatus", "methodCollection"},
        ),
        (
            decide(
                replace(
                    REQUEST, document=DocumentCheck("PERMIS", "2026-12-04")
                ),
                FOUND,
                QUALIF,
            ),
            "RECUP",
            {"identityStatus", "methodCollection"},
        ),
        (
            decide(
                REQUEST, SearchResult("01", "x"), QUALIF, called_at=CALLED_AT
            ),
            "VALI",
            {
                "identityStatus",
                "dateInterrogationINSi",
                "validationMode",
                "validationDate",
            },
        ),
        (
            decide(
                replace(REQUEST, traits=replace(DESK, sex="F")), FOUND, QUALIF
            ),
            "PROV",
            {"identityStatus"},
        ),
        (rejection(REQUEST, "douteuse"), "PROV", {"identityStatus"}),
    ],
)
def test_an_identity_not_qualified_renders_without_any_ins(
    decision: Decision, status: str, parts: set[str]
) -> None:
    """Plain FR Core Patient, no identifier; what the status rests on."""
    patient = render(decision)

    assert patient["meta"]["profile"] == [PROFILE_PATIENT]
    assert "identifier" not in patient
    found = reliability(patient)
    assert found["identityStatus"]["valueCoding"]["code"] == status
    assert set(found) == parts


def test_an_ins_nia_is_a_temporary_identifier() -> None:
    """FR Core fixes use=temp for INS-NIA."""
    nia = replace(ACTIVE, oid=InsOid.NIA)
    patient = render(decide(REQUEST, replace(FOUND, active=nia), QUALIF))

    assert patient["identifier"][0]["use"] == "temp"
    assert patient["identifier"][0]["system"] == "urn:oid:1.2.250.1.213.1.4.9"
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "INS-NIA"


@pytest.mark.parametrize(
    ("decision", "code"),
    [
        (decide(REQUEST, FOUND, QUALIF), "VALI"),
        (decide(replace(REQUEST, document=None), FOUND, QUALIF), "PROV"),
    ],
)
def test_older_fr_core_says_vali_for_qualified(
    decision: Decision, code: str
) -> None:
    """Older FR Core's VALI means "INS may be sent"."""
    patient = render(decision, status_format=StatusFormat.FR_CORE_LEGACY)

    assert reliability(patient)["identityStatus"]["valueCoding"] == {
        "system": CS_IDENTITY_STATUS_LEGACY,
        "code": code,
    }


def test_a_foreign_birth_place_has_no_commune_system() -> None:
    """A 99 code is an INSEE country code, not a commune."""
    abroad = replace(TRAITS, birth_place="99350")
    decision = decide(
        replace(REQUEST, traits=replace(DESK, birth_place="99350")),
        replace(FOUND, traits=abroad),
        QUALIF,
    )

    patient = render(decision)

    (place,) = [e for e in patient["extension"] if e["url"] == EXT_BIRTH_PLACE]
    assert place["valueAddress"]["extension"][0]["valueCoding"] == {
        "code": "99350"
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2009-07-14", "2009-07-14"),
        ("1960-05-00", "1960-05"),
        ("1960-00-00", "1960"),
        ("2009-02-30", None),
        ("2009-13-00", None),
        ("14/07/2009", None),
        (None, None),
    ],
)
def test_registry_dates_become_fhir_dates(
    raw: str | None, expected: str | None
) -> None:
    """Unknown day or month give a partial date; nonsense gives none."""
    assert fhir_date(raw) == expected


@pytest.mark.parametrize(("sex", "gender"), [("M", "male"), ("F", "female")])
def test_sex_becomes_gender(sex: str, gender: str) -> None:
    """INSi's M/F map to FHIR's male/female."""
    decision = decide(
        replace(REQUEST, traits=replace(DESK, sex=sex)),
        replace(FOUND, traits=replace(TRAITS, sex=sex)),
        QUALIF,
    )

    assert render(decision)["gender"] == gender


def test_every_kit_answer_renders_a_valid_patient(
    kit_found: list[SearchResult],
) -> None:
    """The genuine answers, qualified, validate as R4 Patients."""
    for result in kit_found:
        assert result.traits is not None and result.active is not None
        desk = DeskTraits(
            result.traits.birth_name or "",
            tuple(result.traits.first_names),
            result.traits.sex or "",
            result.traits.birth_date or "",
            result.traits.birth_place,
        )
        decision = decide(replace(REQUEST, traits=desk), result, QUALIF)

        patient = render(decision)

        assert patient["meta"]["profile"] == [PROFILE_PATIENT_INS]
        assert patient["identifier"][0]["value"] == result.active.ins
    assert len(kit_found) >= 4
