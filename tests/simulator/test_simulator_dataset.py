"""The data set: the public persons, the matching rule, the JSON file."""

from __future__ import annotations

import json

import pytest

from worker.domain.ins import InsOid, key_is_valid
from worker.errors import ConfigurationError
from worker.insi.model import TraitsSearch
from worker.simulator import (
    Dataset,
    Dialect,
    default_dataset,
    load_dataset,
)
from worker.simulator.dataset import DATASET_FORMAT, dataset_from_json

DEFAULT = default_dataset()


def _codes(search: TraitsSearch, dataset: Dataset = DEFAULT) -> int:
    return len(dataset.search(search))


def test_every_active_ins_has_a_valid_key_and_the_nir_oid() -> None:
    """13 characters, a mod-97 key, OID 1.2.250.1.213.1.4.8."""
    for person in DEFAULT:
        assert len(person.active.nir13) == 13
        assert key_is_valid(person.active.nir13, person.active.key)
        assert person.active.oid == InsOid.NIR


def test_the_kit_readme_cases_give_their_results() -> None:
    """The README's table: 00, 01 and 02 as on the qualification service."""
    table = [
        (TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01"), 1),
        (TraitsSearch("ECETINSI", ("PIERRE-ALAIN",), "M", "2009-07-14"), 1),
        (TraitsSearch("CORSE", ("ANTHONY",), "M", "1980-03-02"), 1),
        (TraitsSearch("DE VINCI", ("LEONARDO",), "M", "2014-02-01"), 2),
        (TraitsSearch("HOUILLES", ("PIERRE",), "M", "1993-01-27"), 0),
        (TraitsSearch("TCHITCHI", ("OLA",), "F", "1936-06-21"), 0),
        (TraitsSearch("TCHITCHI", ("CATARINA",), "F", "1936-06-21"), 1),
        (TraitsSearch("ADRUN", ("ZOE",), "F", "1975-12-31"), 1),
        (TraitsSearch("NESSI", ("MICHELANGELO",), "M", "2010-08-07"), 1),
    ]

    assert [_codes(search) for search, _ in table] == [n for _, n in table]


def test_the_readme_persons_have_the_stated_ins_and_traits() -> None:
    """ADRUN and NESSI: INS, key, first names and birth place given."""
    adrun = DEFAULT.search(TraitsSearch("ADRUN", ("ZOE",), "F", "1975-12-31"))
    nessi = DEFAULT.search(
        TraitsSearch("NESSI", ("MICHELANGELO",), "M", "2010-08-07")
    )

    assert [(p.active.nir13, p.active.key, p.first_names_list,
             p.birth_place) for p in adrun + nessi] == [
        ("2751263220749", "74", "ZOE", "63220"),
        ("1100863220830", "60", "MICHELANGELO ANTHONY", "63220"),
    ]


def test_ecetinsi_history_differs_between_dialects() -> None:
    """Live: one earlier INS with inverted dates; CNDA: a second one."""
    (ecetinsi,) = DEFAULT.search(
        TraitsSearch("ECETINSI", ("MURIEL",), "M", "2009-07-14")
    )

    live = ecetinsi.history_in(Dialect.LIVE)
    cnda = ecetinsi.history_in(Dialect.CNDA)
    assert [(h.nir13, h.key, h.start, h.end) for h in live] == [
        ("2090763220834", "39", "2019-03-01", "2019-02-28")
    ]
    assert [h.nir13 for h in cnda] == ["2090763220834", "2090663220123"]


@pytest.mark.parametrize(
    ("first_names", "found"),
    [
        (("MICHELANGELO",), True),
        (("ANTHONY",), True),
        (("ANTHONY", "MICHELANGELO"), True),
        (("MICHELANGELO ANTHONY",), True),
        (("MICHELANGELO  ANTHONY",), True),
        (("ANTHONY MICHELANGELO",), False),
        (("MICHELANGELO", "PIERRE"), False),
        (("MICHEL",), False),
        ((), True),
    ],
)
def test_each_first_name_sent_must_match(first_names, found) -> None:
    """One name of the list, or the whole list in one Prenom."""
    search = TraitsSearch("NESSI", first_names, "M", "2010-08-07")

    assert _codes(search) == int(found)


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ({"birth_place": "63220"}, True),
        ({"birth_place": "75056"}, False),
        ({"sex": "F"}, False),
        ({"birth_date": "2010-08-08"}, False),
        ({"birth_name": "NESSY"}, False),
    ],
)
def test_name_sex_date_and_place_sent_must_be_equal(change, found) -> None:
    """NomNaissance, Sexe, DateNaissance equal; LieuNaissance if sent."""
    fields = {
        "birth_name": "NESSI",
        "first_names": ("MICHELANGELO",),
        "sex": "M",
        "birth_date": "2010-08-07",
        **change,
    }

    assert _codes(TraitsSearch(**fields)) == int(found)


def _entry(**change: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "birth_name": "DUPONT",
        "first_names": ["JEANNE", "MARIE"],
        "sex": "F",
        "birth_date": "1990-05-17",
        "birth_place": "75056",
        "ins": {"nir13": "2900575056123"},
    }
    entry.update(change)
    return entry


def test_a_json_file_adds_identities_with_computed_keys(tmp_path) -> None:
    """A file's persons join the defaults; a missing key is computed."""
    path = tmp_path / "people.json"
    path.write_text(json.dumps({
        "format": DATASET_FORMAT,
        "identities": [_entry(history=[{"nir13": "2900575056999",
                                        "key": "00"}])],
    }))

    dataset = load_dataset(path)

    found = dataset.search(
        TraitsSearch("DUPONT", ("MARIE",), "F", "1990-05-17")
    )
    assert len(dataset) == len(DEFAULT) + 1 and len(found) == 1
    person = found[0]
    assert key_is_valid(person.active.nir13, person.active.key)
    assert person.history[0].key == "00"
    assert person.tiq_first_name == "JEANNE"


def test_a_json_file_can_replace_the_defaults() -> None:
    """extends_default false: only the file's persons."""
    dataset = dataset_from_json(
        {"extends_default": False, "identities": [_entry(dialect="cnda")]}
    )

    assert len(dataset) == 1
    assert next(iter(dataset)).dialect == "cnda"


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"identities": {}},
        {"format": "other/1", "identities": []},
        {"identities": [_entry(sex="X")]},
        {"identities": [_entry(birth_name="dupont")]},
        {"identities": [_entry(first_names=[])]},
        {"identities": [_entry(first_names=["JEANNE MARIE"])]},
        {"identities": [_entry(birth_date="17/05/1990")]},
        {"identities": [_entry(birth_place="750")]},
        {"identities": [_entry(ins={"nir13": "29005"})]},
        {"identities": [_entry(ins={"nir13": "2900575056123", "key": 7})]},
        {"identities": [_entry(dialect="old")]},
        {"identities": [_entry(tiq_first_name=3)]},
    ],
)
def test_a_bad_json_data_set_is_a_configuration_error(document) -> None:
    """Anything off the format is refused with a field path."""
    with pytest.raises(ConfigurationError, match="simulator data set"):
        dataset_from_json(document)


def test_an_unreadable_file_is_a_configuration_error(tmp_path) -> None:
    """Missing file or broken JSON: ConfigurationError."""
    broken = tmp_path / "broken.json"
    broken.write_text("{")

    for path in (tmp_path / "absent.json", broken):
        with pytest.raises(ConfigurationError):
            load_dataset(path)
