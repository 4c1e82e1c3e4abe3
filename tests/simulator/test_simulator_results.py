"""The simulator's results: the genuine schema, shapes and values."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from lxml import etree

from worker.insi.model import ReturnedIns, SearchResult, TraitsSearch
from worker.insi.reply import parse_reply
from worker.simulator import Dialect, default_dataset
from worker.simulator.dataset import Dataset
from worker.simulator.soap import RESULTAT_NS, SOAP_NS

PERSONS = list(default_dataset())


def _ins(entry: ReturnedIns) -> dict[str, Any]:
    return {
        "nir13": entry.nir13,
        "key": entry.key,
        "oid": entry.oid,
        "type": entry.type,
        "start": entry.start,
        "end": entry.end,
        "ins": entry.ins,
        "key_valid": entry.key_valid,
    }


def as_expected(result: SearchResult) -> dict[str, Any]:
    """A parsed result in the shape of the kit's expected.json."""
    shaped: dict[str, Any] = {
        "kind": "result",
        "cr_code": result.cr_code,
        "cr_label": result.cr_label,
    }
    if result.active is None or result.traits is None:
        return shaped
    traits = result.traits
    shaped["active"] = _ins(result.active)
    shaped["history"] = [_ins(h) for h in result.history]
    shaped["traits"] = {
        "NomNaissance": traits.birth_name,
        "Prenom": traits.first_name_sent,
        "ListePrenom": traits.first_names_list,
        "Sexe": traits.sex,
        "DateNaissance": traits.birth_date,
        "LieuNaissance": traits.birth_place,
        "first_names": traits.first_names,
        "first_name": traits.first_name,
    }
    return shaped


def _resultat(body: bytes) -> etree._Element:
    found = etree.fromstring(body).find(
        f"{{{SOAP_NS}}}Body/{{{RESULTAT_NS}}}RESULTAT"
    )
    assert found is not None
    return found


@pytest.mark.parametrize(
    "person", PERSONS, ids=[f"{p.birth_name}-{p.birth_place}" for p in PERSONS]
)
async def test_every_public_person_is_found_with_a_schema_valid_reply(
    person, simulator, build, post, search_of, resultat_schema
) -> None:
    """Each person of the default data set: 00, valid per the Cnam XSD."""
    reply = await post(simulator.url, build(search_of(person)))

    resultat = _resultat(reply.body)
    resultat_schema.assertValid(resultat)
    result = parse_reply(reply.body, reply.status)
    assert (reply.status, result.cr_code) == (200, "00")
    assert result.active is not None and result.active.key_valid
    assert result.active.ins == person.active.nir13 + person.active.key
    assert result.traits is not None
    assert result.traits.first_names == list(person.first_names)


CASES = [
    (
        "live-ecetinsi-pierre-alain.xml",
        Dialect.LIVE,
        TraitsSearch("ECETINSI", ("PIERRE-ALAIN",), "M", "2009-07-14"),
    ),
    (
        "cnda-TEST_2.04_cas2.xml",
        Dialect.CNDA,
        TraitsSearch("ECETINSI", ("PIERRE-ALAIN",), "M", "2009-07-14"),
    ),
    (
        "cnda-TEST_2.08_cas1.xml",
        Dialect.CNDA,
        TraitsSearch("CORSE", ("ANTHONY",), "M", "1980-03-02"),
    ),
    (
        "live-adrtrois-toussaint.xml",
        Dialect.LIVE,
        TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01"),
    ),
    (
        "cnda-REP_CR01.xml",
        Dialect.CNDA,
        TraitsSearch("HOUILLES", ("PIERRE",), "M", "1993-01-27"),
    ),
    (
        "live-cr02-multiple.xml",
        Dialect.LIVE,
        TraitsSearch("DE VINCI", ("LEONARDO",), "M", "2014-02-01"),
    ),
]


@pytest.mark.parametrize(
    ("sample", "dialect", "search"), CASES, ids=[c[0] for c in CASES]
)
async def test_reply_parses_to_the_values_of_the_genuine_sample(
    sample, dialect, search, start_simulator, build, post, expected
) -> None:
    """The worker reads the simulator's reply as the genuine one."""
    simulator = await start_simulator(dialect=dialect)

    reply = await post(simulator.url, build(search))

    assert as_expected(parse_reply(reply.body, reply.status)) == (
        expected[sample]
    )


async def test_live_dialect_has_the_live_envelope_and_no_tiq_prenom(
    simulator, build, post, search_of
) -> None:
    """env:Body declaring S and env, default namespace, no TIQ/Prenom."""
    reply = await post(simulator.url, build(search_of(PERSONS[0])))

    root = etree.fromstring(reply.body)
    body = root[0]
    assert (root.prefix, body.prefix) == ("soap", "env")
    assert body.nsmap["S"] == body.nsmap["env"] == SOAP_NS
    resultat = body[0]
    assert resultat.prefix is None and resultat.nsmap[None] == RESULTAT_NS
    assert resultat.find(f".//{{{RESULTAT_NS}}}ListePrenom") is not None
    assert resultat.find(f".//{{{RESULTAT_NS}}}Prenom") is None
    assert reply.content_type.startswith("application/soap+xml")


async def test_cnda_dialect_puts_dates_first_and_sends_prenom(
    start_simulator, build, post, resultat_schema
) -> None:
    """S:Body, TIQ/Prenom, DateDeb before IdIndividu: off the schema."""
    simulator = await start_simulator(dialect=Dialect.CNDA)
    search = TraitsSearch("ECETINSI", ("PIERRE-ALAIN",), "M", "2009-07-14")
    corse = TraitsSearch("CORSE", ("ANTHONY",), "M", "1980-03-02")

    ecetinsi = await post(simulator.url, build(search))
    anthony = await post(simulator.url, build(corse))

    root = etree.fromstring(ecetinsi.body)
    assert root[0].prefix == "S" and set(root[0].nsmap) == {"S", "soap"}
    earlier = _resultat(ecetinsi.body).find(f".//{{{RESULTAT_NS}}}INSHISTO")
    assert earlier is not None
    assert etree.QName(earlier[0]).localname == "DateDeb"
    assert not resultat_schema.validate(_resultat(ecetinsi.body))
    prenom = _resultat(anthony.body).find(f".//{{{RESULTAT_NS}}}Prenom")
    assert prenom is not None and prenom.text == "ANTHONY"


async def test_an_identity_can_have_its_own_dialect(
    start_simulator, build, post, search_of
) -> None:
    """A person marked CNDA answers in CNDA on a live simulator."""
    person = PERSONS[0]
    marked = dataclasses.replace(person, dialect=Dialect.CNDA)
    simulator = await start_simulator(dataset=Dataset([marked]))

    reply = await post(simulator.url, build(search_of(marked)))

    assert etree.fromstring(reply.body)[0].prefix == "S"
    assert simulator.dialect is Dialect.LIVE


@pytest.mark.parametrize(
    ("search", "code", "label"),
    [
        (
            TraitsSearch("TCHITCHI", ("OLA",), "F", "1936-06-21"),
            "01",
            "Aucune identite trouvee",
        ),
        (
            TraitsSearch("DE VINCI", ("LEONARDO",), "M", "2014-02-01"),
            "02",
            "Plusieurs identites trouvees",
        ),
    ],
    ids=["01", "02"],
)
async def test_empty_results_carry_the_exact_label_and_validate(
    search, code, label, simulator, build, post, resultat_schema
) -> None:
    """01 and 02: the report alone, with INSi's exact LibelleCR."""
    reply = await post(simulator.url, build(search))

    resultat = _resultat(reply.body)
    resultat_schema.assertValid(resultat)
    assert len(resultat) == 1
    result = parse_reply(reply.body, reply.status)
    assert (result.cr_code, result.cr_label, result.active) == (
        code, label, None
    )


async def test_birth_place_resolves_the_de_vinci_ambiguity(
    simulator, build, post
) -> None:
    """02 without LieuNaissance; 00 with one of the two birth places."""
    places = {p.birth_place for p in PERSONS if p.birth_name == "DE VINCI"}

    found = []
    for place in sorted(places):
        search = TraitsSearch(
            "DE VINCI", ("LEONARDO",), "M", "2014-02-01", place
        )
        reply = await post(simulator.url, build(search))
        result = parse_reply(reply.body, reply.status)
        assert result.cr_code == "00" and result.traits is not None
        found.append((result.traits.birth_place, result.active))

    assert len(places) == 2
    assert {place for place, _ in found} == places
    assert found[0][1] != found[1][1]
