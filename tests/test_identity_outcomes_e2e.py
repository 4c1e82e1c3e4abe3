"""Every identity outcome end to end: broker, worker, simulator, database.

Each request goes through the real RabbitMQ and PostgreSQL; every event
it raises is validated against the published JSON Schema and rendered as
a FR Core ``Patient``, which carries an INS identifier exactly when the
identity is qualified.
"""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree
from worker_harness import (
    CN,
    RunningWorker,
    request_body,
    running_worker,
    traits,
    validate_event,
)

from worker.domain.ins import InsOid, compute_key
from worker.fhir import PROFILE_PATIENT, PROFILE_PATIENT_INS, patient_resource
from worker.settings import Settings
from worker.simulator.dataset import (
    Identity,
    dataset_from_json,
    default_identities,
)
from worker.simulator.server import Simulator

try:
    from fhir.resources.R4B.patient import Patient as R4Patient
except ImportError:  # the FHIR model library is a test extra
    R4Patient = None

pytestmark = pytest.mark.servers

ADRTROIS = traits("Adrtrois", ["Toussaint"], "M", "1960-01-01")
HOUILLES = traits("Houilles", ["Pierre"], "M", "1993-01-27")
DE_VINCI = traits("De Vinci", ["Leonardo"], "M", "2014-02-01")
ECETINSI = traits(
    "Ecetinsi", ["Pierre-Alain", "Muriel", "Floriant"], "M", "2009-07-14"
)
# The registry's order is PIERRE-ALAIN MURIEL: INSi finds the person
# (every first name sent is one of theirs), the desk's first is wrong.
ECETINSI_SWAPPED = traits(
    "Ecetinsi", ["Muriel", "Pierre-Alain"], "M", "2009-07-14"
)
NOT_A_DOCUMENT = {"type": "PERMIS", "checked_at": CN["checked_at"]}


def _registered(name: str) -> Identity:
    return next(i for i in default_identities() if i.birth_name == name)


def _ins(nir13: str) -> str:
    return nir13 + compute_key(nir13)


ADRTROIS_PERSON = _registered("ADRTROIS")
ADRTROIS_INS = ADRTROIS_PERSON.active.nir13 + ADRTROIS_PERSON.active.key
ECETINSI_PERSON = _registered("ECETINSI")
ECETINSI_INS = ECETINSI_PERSON.active.nir13 + ECETINSI_PERSON.active.key
ECETINSI_OLD = ECETINSI_PERSON.history[0]
ECETINSI_OLD_INS = ECETINSI_OLD.nir13 + ECETINSI_OLD.key

# Made-up persons for the custom data sets below.
BAD_KEY_NIR13 = "1700575056123"
DEMO_OID_NIR13 = "1700575056124"
NIA_NIR13 = "1880975056001"
NIR_NIR13 = "1880975056002"


def _person(
    name: str,
    first: str,
    sex: str,
    born: str,
    ins: dict[str, Any],
) -> dict[str, Any]:
    return {
        "birth_name": name,
        "first_names": [first],
        "sex": sex,
        "birth_date": born,
        "birth_place": "75056",
        "ins": ins,
    }


ANOMALIES = dataset_from_json(
    {
        "identities": [
            # the registry's key is not the mod-97 key
            _person(
                "CLEFAUSSE",
                "JEAN",
                "M",
                "1970-05-12",
                {"nir13": BAD_KEY_NIR13, "key": "00"},
            ),
            # a demo OID, which the qualification environment refuses
            _person(
                "DEMONSTRATION",
                "PAUL",
                "M",
                "1970-05-12",
                {"nir13": DEMO_OID_NIR13, "oid": InsOid.NIR_DEMO},
            ),
        ]
    }
)


async def submit(
    w: RunningWorker, body_parts: tuple[str, bytes]
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Publish one request; its outcome row and its events by type."""
    request_id, body = body_parts
    await w.publish(body)

    row = await w.outcome(request_id)
    count = await w.db.fetchval(
        "SELECT count(*) FROM outbox WHERE request_id = $1", request_id
    )
    events = await w.take_events(count)

    by_type = {e["type"].removeprefix("fr.ins.identity."): e for e in events}
    assert len(by_type) == count
    for event in events:
        assert event["data"]["request_id"] == request_id
        check_event(event)
    return row, by_type


def check_event(event: dict[str, Any]) -> dict[str, Any]:
    """Schema-valid, and its FR Core Patient shows the INS iff qualified."""
    validate_event(event)
    data = event["data"]

    patient = patient_resource(data)

    codes = [
        coding["code"]
        for identifier in patient.get("identifier", [])
        for coding in identifier["type"]["coding"]
    ]
    if data["status"] == "QUAL":
        assert patient["meta"]["profile"] == [PROFILE_PATIENT_INS]
        assert codes and all(c.startswith("INS-") for c in codes)
        assert patient["identifier"][0]["value"] == data["ins"]["value"]
    else:
        assert patient["meta"]["profile"] == [PROFILE_PATIENT]
        assert "identifier" not in patient
        assert data["ins"] is None
    if R4Patient is not None:
        R4Patient.model_validate(patient)
    return patient


async def calls_of(w: RunningWorker, request_id: str) -> list[Any]:
    """The stored INSi exchanges of one request, in order."""
    rows: list[Any] = await w.db.fetch(
        "SELECT * FROM insi_calls WHERE request_id = $1 ORDER BY id",
        request_id,
    )
    return rows


async def identity_of(w: RunningWorker, patient: str) -> Any:
    """The stored identity of one local patient."""
    return await w.db.fetchrow(
        "SELECT * FROM identities WHERE patient_ref = $1", patient
    )


async def test_checked_document_and_00_is_qualified(
    settings: Settings, db: Any
) -> None:
    """00 + ID card: ``qualified``, QUAL, the INS in event and Patient."""
    async with running_worker(settings, db) as w:
        row, events = await submit(w, request_body(ADRTROIS, document=CN))

        identity = await identity_of(w, "ipp/000123")

    assert row["outcome"] == "qualified"
    assert list(events) == ["qualified"]
    data = events["qualified"]["data"]
    assert data["status"] == "QUAL"
    assert data["ins"] == {
        "value": ADRTROIS_INS,
        "oid": InsOid.NIR,
        "type": "INS-NIR",
    }
    assert data["insi"]["cr_code"] == "00"
    assert identity["status"] == "QUAL"
    assert identity["ins"] == ADRTROIS_INS
    patient = patient_resource(data)
    assert patient["identifier"][0]["system"] == f"urn:oid:{InsOid.NIR}"
    assert patient["identifier"][0]["use"] == "official"


@pytest.mark.parametrize(
    "document", [None, NOT_A_DOCUMENT], ids=["no-document", "licence"]
)
async def test_00_without_a_high_trust_document_is_retrieved(
    document: dict[str, str] | None, settings: Settings, db: Any
) -> None:
    """No document, or a driving licence: ``retrieved``, RECUP, no INS."""
    async with running_worker(settings, db) as w:
        row, events = await submit(
            w, request_body(ADRTROIS, document=document)
        )

        identity = await identity_of(w, "ipp/000123")

    assert row["outcome"] == "retrieved"
    assert list(events) == ["retrieved"]
    assert events["retrieved"]["data"]["status"] == "RECUP"
    assert events["retrieved"]["data"]["ins"] is None
    # The worker keeps the INS INSi confirmed; it only never sends it.
    assert identity["status"] == "RECUP"
    assert identity["ins"] == ADRTROIS_INS


@pytest.mark.parametrize(
    ("desk", "outcome", "code"),
    [(HOUILLES, "not_found", "01"), (DE_VINCI, "ambiguous", "02")],
    ids=["not-found", "ambiguous"],
)
async def test_unconfirmed_identity_keeps_the_document_axis_only(
    desk: dict[str, Any],
    outcome: str,
    code: str,
    settings: Settings,
    db: Any,
) -> None:
    """01 / 02 after the first-name strategy: VALI with an ID card."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(desk, document=CN)
        row, events = await submit(w, (request_id, body))

        calls = await calls_of(w, request_id)
        identity = await identity_of(w, "ipp/000123")

    assert row["outcome"] == outcome
    assert list(events) == [outcome]
    assert events[outcome]["data"]["status"] == "VALI"
    assert calls
    assert {c["cr_code"] for c in calls} == {code}
    assert identity["status"] == "VALI"
    assert identity["ins"] is None


@pytest.mark.parametrize(
    ("desk", "ins", "reason", "mismatched", "supplied"),
    [
        (
            ECETINSI_SWAPPED,
            None,
            "traits_mismatch",
            ["first_name"],
            None,
        ),
        (
            traits("Adrtrois", ["Toussaint"], "M", "1960-01-01", "2A004"),
            None,
            "traits_mismatch",
            ["birth_place"],
            None,
        ),
        (
            ADRTROIS,
            {"value": "279035121518989", "oid": InsOid.NIR_TEST},
            "supplied_ins_unknown",
            [],
            "unknown",
        ),
    ],
    ids=["first-name-order", "birth-place", "supplied-ins-unknown"],
)
async def test_00_that_contradicts_the_request_is_a_mismatch(
    desk: dict[str, Any],
    ins: dict[str, str] | None,
    reason: str,
    mismatched: list[str],
    supplied: str | None,
    settings: Settings,
    db: Any,
) -> None:
    """A found identity that is not the desk's: ``mismatch``, PROV."""
    async with running_worker(settings, db) as w:
        row, events = await submit(w, request_body(desk, document=CN, ins=ins))

        identity = await identity_of(w, "ipp/000123")

    data = events["mismatch"]["data"]
    assert row["outcome"] == "mismatch"
    assert row["reason"] == reason
    assert list(events) == ["mismatch"]
    assert data["status"] == "PROV"
    assert data["mismatched"] == mismatched
    assert data["supplied_ins"] == supplied
    # The registry's traits go to a human to resolve; never an INS.
    assert data["traits"]["birth_name"] in ("ECETINSI", "ADRTROIS")
    assert identity["status"] == "PROV"
    assert identity["ins"] is None


@pytest.mark.parametrize(
    ("desk", "nir13"),
    [
        (
            traits("Clefausse", ["Jean"], "M", "1970-05-12"),
            BAD_KEY_NIR13,
        ),
        (
            traits("Demonstration", ["Paul"], "M", "1970-05-12"),
            DEMO_OID_NIR13,
        ),
    ],
    ids=["bad-key", "demo-oid-in-qualification"],
)
async def test_untrustworthy_returned_ins_is_an_anomaly(
    desk: dict[str, Any], nir13: str, settings: Settings, db: Any
) -> None:
    """Bad key or refused OID: ``anomaly``, raw reply kept, no INS."""
    async with running_worker(settings, db, Simulator(dataset=ANOMALIES)) as w:
        request_id, body = request_body(desk, document=CN)
        row, events = await submit(w, (request_id, body))

        [call] = await calls_of(w, request_id)
        identity = await identity_of(w, "ipp/000123")

    assert row["outcome"] == "anomaly"
    assert row["reason"] == "returned_ins_invalid"
    assert list(events) == ["anomaly"]
    assert events["anomaly"]["data"]["status"] == "VALI"
    assert call["cr_code"] == "00"
    assert nir13.encode() in call["response_xml"]
    assert identity["ins"] is None
    assert identity["status"] == "VALI"


def _refused(
    desk: dict[str, Any],
    attributes: list[str] | None,
    reason: str,
    downgrades: bool,
) -> Any:
    return pytest.param(desk, attributes, reason, downgrades, id=reason)


@pytest.mark.parametrize(
    ("desk", "attributes", "reason", "downgrades"),
    [
        _refused(ADRTROIS, ["douteuse"], "douteuse", True),
        _refused(ADRTROIS, ["fictive"], "fictive", True),
        _refused(
            dict(ADRTROIS, birth_date_corrected=True),
            None,
            "birth_date_corrected",
            True,
        ),
        _refused(
            traits("Адртроис", ["Toussaint"], "M", "1960-01-01"),
            None,
            "unsupported_characters",
            False,
        ),
        _refused(dict(ADRTROIS, sex="I"), None, "invalid_sex", False),
        _refused(
            dict(ADRTROIS, birth_date="1960-02-30"),
            None,
            "impossible_date",
            False,
        ),
    ],
)
async def test_forbidden_request_is_rejected_without_calling_insi(
    desk: dict[str, Any],
    attributes: list[str] | None,
    reason: str,
    downgrades: bool,
    settings: Settings,
    db: Any,
) -> None:
    """Refused before INSi: ``rejected`` with its reason, zero calls."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(
            desk, document=CN, attributes=attributes
        )
        row, events = await submit(w, (request_id, body))

        calls = await calls_of(w, request_id)
        identity = await identity_of(w, "ipp/000123")

    data = events["rejected"]["data"]
    assert row["outcome"] == "rejected"
    assert row["reason"] == reason
    assert list(events) == ["rejected"]
    assert data["reason"] == reason
    assert data["insi"] is None
    assert calls == []
    assert w.simulator.stats.total == 0
    # Only a refusal about the identity itself marks it provisional.
    if downgrades:
        assert identity["status"] == "PROV"
    else:
        assert identity is None


async def test_supplied_historical_ins_publishes_ins_changed(
    settings: Settings, db: Any
) -> None:
    """Verifying an outdated INS: qualified on the active one, old → new."""
    async with running_worker(settings, db) as w:
        row, events = await submit(
            w,
            request_body(
                ECETINSI,
                document=CN,
                ins={"value": ECETINSI_OLD_INS, "oid": ECETINSI_OLD.oid},
            ),
        )

    assert row["outcome"] == "qualified"
    assert sorted(events) == ["ins_changed", "qualified"]
    data = events["ins_changed"]["data"]
    assert data["supplied_ins"] == "historical"
    assert data["ins_changed"]["old"]["value"] == ECETINSI_OLD_INS
    assert data["ins_changed"]["new"]["value"] == ECETINSI_INS
    uses = {i["value"]: i["use"] for i in patient_resource(data)["identifier"]}
    assert uses == {ECETINSI_INS: "official", ECETINSI_OLD_INS: "old"}


async def test_active_ins_replaced_at_the_registry_publishes_ins_changed(
    settings: Settings, db: Any
) -> None:
    """Qualified on a NIA, later INSi gives a NIR: ``ins_changed``."""
    person = {
        "birth_name": "CHANGEMENT",
        "first_names": ["LUC"],
        "sex": "M",
        "birth_date": "1988-09-10",
        "birth_place": "75056",
    }
    nia = {"nir13": NIA_NIR13, "oid": InsOid.NIA}
    before = dataset_from_json({"identities": [{**person, "ins": nia}]})
    after = dataset_from_json(
        {
            "identities": [
                {**person, "ins": {"nir13": NIR_NIR13}, "history": [nia]}
            ]
        }
    )
    desk = traits("Changement", ["Luc"], "M", "1988-09-10")

    async with running_worker(settings, db, Simulator(dataset=before)) as w:
        _, first = await submit(w, request_body(desk, document=CN))
        w.simulator.dataset = after
        _, second = await submit(w, request_body(desk, document=CN))

    assert list(first) == ["qualified"]
    assert first["qualified"]["data"]["ins"]["type"] == "INS-NIA"
    assert (
        patient_resource(first["qualified"]["data"])["identifier"][0]["use"]
        == "temp"
    )
    assert sorted(second) == ["ins_changed", "qualified"]
    change = second["ins_changed"]["data"]["ins_changed"]
    assert change["old"] == {
        "value": _ins(NIA_NIR13),
        "oid": InsOid.NIA,
        "type": "INS-NIA",
    }
    assert change["new"]["value"] == _ins(NIR_NIR13)


@pytest.mark.parametrize(
    ("second_desk", "second_document", "outcome", "status"),
    [
        (ECETINSI, None, "retrieved", "RECUP"),
        (ECETINSI_SWAPPED, CN, "mismatch", "PROV"),
        (ECETINSI, CN, None, "PROV"),
    ],
    ids=["document-withdrawn", "re-verified-mismatch", "now-douteuse"],
)
async def test_losing_qualification_publishes_unqualified(
    second_desk: dict[str, Any],
    second_document: dict[str, str] | None,
    outcome: str | None,
    status: str,
    settings: Settings,
    db: Any,
) -> None:
    """A QUAL identity downgraded: ``unqualified`` with no INS in it."""
    attributes = ["douteuse"] if outcome is None else None
    async with running_worker(settings, db) as w:
        _, first = await submit(w, request_body(ECETINSI, document=CN))
        row, second = await submit(
            w,
            request_body(
                second_desk, document=second_document, attributes=attributes
            ),
        )

        identity = await identity_of(w, "ipp/000123")

    expected_outcome = outcome or "rejected"
    assert list(first) == ["qualified"]
    assert row["outcome"] == expected_outcome
    assert sorted(second) == sorted([expected_outcome, "unqualified"])
    data = second["unqualified"]["data"]
    assert data["status"] == status
    assert data["ins"] is None
    assert data["history"] == []
    assert identity["status"] == status
    changes = await db.fetch(
        "SELECT old_status, new_status FROM identity_changes ORDER BY id"
    )
    assert [tuple(c) for c in changes][-1] == ("QUAL", status)


async def test_requalification_after_a_downgrade_is_a_plain_qualified(
    settings: Settings, db: Any
) -> None:
    """QUAL → RECUP → QUAL with the same INS: no ``ins_changed``."""
    async with running_worker(settings, db) as w:
        await submit(w, request_body(ADRTROIS, document=CN))
        _, downgraded = await submit(w, request_body(ADRTROIS))
        _, again = await submit(w, request_body(ADRTROIS, document=CN))

    assert sorted(downgraded) == ["retrieved", "unqualified"]
    assert list(again) == ["qualified"]


ACCENTED = dataset_from_json(
    {
        "extends_default": False,
        "identities": [
            {
                "birth_name": "LEFEVRE",
                "first_names": ["HELENE", "MARIE"],
                "sex": "F",
                "birth_date": "1985-04-03",
                "birth_place": "75056",
                "ins": {"nir13": "2850475056031"},
                # the registry's Prenom as sent, accent included
                "tiq_first_name": "Hélène",
                "dialect": "cnda",
            }
        ],
    }
)


def _tiq(response_xml: bytes) -> dict[str, str | None]:
    """The registry's traits, read straight from the raw reply."""
    root = etree.fromstring(response_xml)
    [tiq] = root.xpath("//*[local-name()='TIQ']")
    return {etree.QName(child).localname: child.text for child in tiq}


async def test_stored_traits_are_insi_exact_values_never_normalised(
    settings: Settings, db: Any
) -> None:
    """Desk ``Lefèvre Hélène``: INSi gets a copy, stores INSi's bytes."""
    desk = traits("Lefèvre", ["Hélène"], "F", "1985-04-03")
    async with running_worker(settings, db, Simulator(dataset=ACCENTED)) as w:
        request_id, body = request_body(desk, document=CN)
        row, events = await submit(w, (request_id, body))

        [call] = await calls_of(w, request_id)
        identity = await identity_of(w, "ipp/000123")

    tiq = _tiq(call["response_xml"])
    stored = identity["traits"]
    published = events["qualified"]["data"]["traits"]
    assert row["outcome"] == "qualified"
    # What INSi was sent: the normalised copy of the desk's traits.
    assert call["search"]["birth_name"] == "LEFEVRE"
    assert call["search"]["first_names"] == ["HELENE"]
    # What is stored and published: the registry's values, as returned.
    assert stored["first_name_sent"] == tiq["Prenom"] == "Hélène"
    assert stored["first_names_list"] == tiq["ListePrenom"]
    assert stored["birth_name"] == tiq["NomNaissance"]
    assert stored["birth_place"] == tiq["LieuNaissance"]
    assert published["first_name"] == "Hélène"
    assert published["first_names"] == tiq["ListePrenom"] == "HELENE MARIE"
    assert published["birth_name"] == tiq["NomNaissance"]
    # The desk's own spelling is never stored as the identity's.
    assert "Lefèvre" not in str(dict(identity))
