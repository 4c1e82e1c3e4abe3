"""The INS matricule, key, OID and environment rules."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.fr import nir

from worker.domain.ins import (
    DEFAULT_ACCEPTED_OIDS,
    Environment,
    InsIdentifier,
    InsOid,
    accepted_oids,
    check_ins,
    check_returned_ins,
    compute_key,
    ins_type,
    key_is_valid,
)
from worker.errors import ConfigurationError
from worker.insi.model import ReturnedIns

PROD = DEFAULT_ACCEPTED_OIDS[Environment.PRODUCTION]
QUALIF = DEFAULT_ACCEPTED_OIDS[Environment.QUALIFICATION]
ALL = frozenset(InsOid)


def keyed(nir13: str) -> str:
    """A matricule with its right key, to test one rule at a time."""
    return nir13 + compute_key(nir13)


@pytest.mark.parametrize(
    ("value", "oid", "accepted", "expected"),
    [
        # the public values of the rules
        ("279035121518989", InsOid.NIR_TEST, QUALIF, []),
        ("260058815400233", InsOid.NIR, PROD, []),
        ("123456789012244", InsOid.NIR, PROD, ["key"]),
        ("147720425367411", InsOid.NIR, PROD, ["key"]),
        # length and characters
        ("27903512151898", InsOid.NIR, ALL, ["length"]),
        ("2790351215189890", InsOid.NIR, ALL, ["length"]),
        ("", InsOid.NIR, ALL, ["length"]),
        ("27903512151898A", InsOid.NIR, ALL, ["format"]),
        ("180032b02040123", InsOid.NIR, ALL, ["format"]),
        ("2790351215.8989", InsOid.NIR, ALL, ["format"]),
        ("2 9035121518989", InsOid.NIR, ALL, ["format"]),
        ("180032C02040123", InsOid.NIR, ALL, ["format"]),
        # sex digit
        (keyed("3790351215189"), InsOid.NIR, ALL, ["sex_digit"]),
        (keyed("7790351215189"), InsOid.NIR, ALL, ["sex_digit"]),
        (keyed("0790351215189"), InsOid.NIR, ALL, ["sex_digit"]),
        # month: 01-12, or 20-99 when unknown
        (keyed("2790051215189"), InsOid.NIR, ALL, ["month"]),
        (keyed("2791351215189"), InsOid.NIR, ALL, ["month"]),
        (keyed("2791951215189"), InsOid.NIR, ALL, ["month"]),
        (keyed("2791251215189"), InsOid.NIR, ALL, []),
        (keyed("2792051215189"), InsOid.NIR, ALL, []),
        (keyed("2799951215189"), InsOid.NIR, ALL, []),
        # département
        (keyed("2790300215189"), InsOid.NIR, ALL, ["departement"]),
        (keyed("2790320215189"), InsOid.NIR, ALL, []),
        (keyed("279032A215189"), InsOid.NIR, ALL, []),
        (keyed("279032B215189"), InsOid.NIR, ALL, []),
        (keyed("2790396215189"), InsOid.NIR, ALL, []),
        (keyed("2790397115189"), InsOid.NIR, ALL, []),
        (keyed("2790397815189"), InsOid.NIR, ALL, []),
        (keyed("2790397015189"), InsOid.NIR, ALL, ["departement"]),
        (keyed("2790397915189"), InsOid.NIR, ALL, ["departement"]),
        (keyed("2790398715189"), InsOid.NIR, ALL, []),
        (keyed("2790398315189"), InsOid.NIR, ALL, ["departement"]),
        (keyed("2790399350189"), InsOid.NIR, ALL, []),
        (keyed("2790399050189"), InsOid.NIR, ALL, ["departement"]),
        # several at once
        (keyed("3790051215189"), InsOid.NIR, ALL, ["sex_digit", "month"]),
        # OIDs
        ("260058815400233", "1.2.250.1.213.1.4.12", ALL, ["oid_unknown"]),
        ("260058815400233", "1.2.250.1.213.1.4.2", ALL, ["oid_unknown"]),
        ("260058815400233", "", ALL, ["oid_unknown"]),
        ("279035121518989", InsOid.NIR_TEST, PROD, ["oid_not_accepted"]),
        ("279035121518989", InsOid.NIR_DEMO, PROD, ["oid_not_accepted"]),
        (
            "260058815400233",
            InsOid.NIR,
            DEFAULT_ACCEPTED_OIDS[Environment.TEST],
            ["oid_not_accepted"],
        ),
        (
            "123456789012244",
            InsOid.NIR_TEST,
            PROD,
            ["key", "oid_not_accepted"],
        ),
        ("12345", "x", PROD, ["length", "oid_unknown"]),
    ],
)
def test_check_ins_gives_one_reason_per_broken_rule(
    value: str, oid: str, accepted: frozenset[str], expected: list[str]
) -> None:
    """Each rule of the matricule and OID has its own reason code."""
    assert check_ins(value, oid, accepted) == expected


def test_kit_ins_pass_every_check_in_qualification(
    kit_expected: dict[str, Any],
) -> None:
    """Every INS of the genuine responses is valid where they come from."""
    seen = 0
    for entry in kit_expected.values():
        if not isinstance(entry, dict) or "active" not in entry:
            continue
        for ins in [entry["active"], *entry["history"]]:
            assert check_ins(ins["ins"], ins["oid"], QUALIF) == []
            assert key_is_valid(ins["nir13"], ins["key"]) is ins["key_valid"]
            seen += 1
    assert seen >= 6


def test_kit_ins_are_refused_in_the_test_environment(
    kit_expected: dict[str, Any],
) -> None:
    """Production OIDs, as the qualification service returns, are not test."""
    accepted = accepted_oids("test")
    for entry in kit_expected.values():
        if isinstance(entry, dict) and entry.get("active"):
            active = entry["active"]
            assert check_ins(active["ins"], active["oid"], accepted) == [
                "oid_not_accepted"
            ]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("production", {InsOid.NIR, InsOid.NIA}),
        ("qualification", {InsOid.NIR, InsOid.NIA, InsOid.NIR_TEST}),
        ("test", {InsOid.NIR_TEST, InsOid.NIR_DEMO}),
        ("demo", {InsOid.NIR_TEST, InsOid.NIR_DEMO}),
    ],
)
def test_each_environment_accepts_its_default_oids(
    environment: str, expected: set[str]
) -> None:
    """The default accepted set per environment is our documented reading."""
    assert accepted_oids(environment) == frozenset(expected)


@pytest.mark.parametrize(
    ("environment", "override"),
    [
        ("test", (InsOid.NIR,)),
        ("qualification", (InsOid.NIR_TEST,)),
        ("production", (InsOid.NIR,)),
        ("demo", tuple(InsOid)),
    ],
)
def test_an_override_replaces_the_default_set(
    environment: str, override: tuple[str, ...]
) -> None:
    """An explicit override is taken as is, not added to the default."""
    assert accepted_oids(environment, override) == frozenset(override)


@pytest.mark.parametrize(
    ("environment", "override"),
    [
        ("production", (InsOid.NIR, InsOid.NIR_TEST)),
        ("production", (InsOid.NIR_DEMO,)),
        ("test", ("1.2.250.1.213.1.4.12",)),
        ("staging", ()),
        ("Production", ()),
    ],
)
def test_unsafe_or_unknown_configuration_is_refused(
    environment: str, override: tuple[str, ...]
) -> None:
    """Test OIDs in production, non-INS OIDs, unknown environments: no."""
    with pytest.raises(ConfigurationError):
        accepted_oids(environment, override)


@pytest.mark.parametrize(
    ("oid", "expected"),
    [
        (InsOid.NIR, "INS-NIR"),
        (InsOid.NIA, "INS-NIA"),
        (InsOid.NIR_TEST, "INS-NIR-TEST"),
        (InsOid.NIR_DEMO, "INS-NIR-DEMO"),
        ("1.2.250.1.213.1.4.2", None),
    ],
)
def test_the_identifier_type_follows_the_oid(
    oid: str, expected: str | None
) -> None:
    """INS-NIR, INS-NIA... come from the OID; other OIDs have none."""
    assert ins_type(oid) == expected
    assert InsIdentifier("260058815400233", oid).type == expected


@pytest.mark.parametrize(
    ("ins", "expected"),
    [
        (ReturnedIns("1090763220834", "89", InsOid.NIR), []),
        (ReturnedIns("1090763220834", "89", InsOid.NIR, type="NIR"), []),
        (ReturnedIns("1090763220834", "89", InsOid.NIR, type="nir"), []),
        (
            ReturnedIns("1090763220834", "89", InsOid.NIR, type="NIA"),
            ["type_mismatch"],
        ),
        (
            ReturnedIns("1090763220834", "89", InsOid.NIA, type="NIR"),
            ["type_mismatch"],
        ),
        # undocumented values are not judged
        (ReturnedIns("1090763220834", "89", InsOid.NIR, type="X"), []),
        (ReturnedIns("1090763220834", None, InsOid.NIR), ["length"]),
        (ReturnedIns("10907632208348", "9", InsOid.NIR), ["length"]),
        (ReturnedIns("1090763220834", "88", InsOid.NIR), ["key"]),
        (
            ReturnedIns("1090763220834", "89", InsOid.NIR_TEST),
            ["oid_not_accepted"],
        ),
    ],
)
def test_returned_ins_is_checked_like_a_supplied_one(
    ins: ReturnedIns, expected: list[str]
) -> None:
    """A returned key is never trusted; TypeMatricule must fit the OID."""
    assert check_returned_ins(ins, PROD) == expected


_DEPARTEMENTS = st.one_of(
    st.integers(1, 96).map(lambda n: f"{n:02d}"),
    st.sampled_from(["2A", "2B"]),
)


@st.composite
def matricules(draw: st.DrawFn) -> str:
    """Any 13-character matricule the INS rules allow."""
    sex = draw(st.sampled_from("12"))
    year = draw(st.integers(0, 99))
    month = draw(st.one_of(st.integers(1, 12), st.integers(20, 99)))
    kind = draw(st.sampled_from(["plain", "97", "98", "99"]))
    if kind == "plain":
        place = draw(_DEPARTEMENTS) + f"{draw(st.integers(0, 999)):03d}"
    elif kind == "97":
        place = f"97{draw(st.integers(1, 8))}{draw(st.integers(0, 99)):02d}"
    elif kind == "98":
        place = f"98{draw(st.integers(4, 9))}{draw(st.integers(0, 99)):02d}"
    else:
        place = f"99{draw(st.integers(100, 999))}"
    order = draw(st.integers(0, 999))
    return f"{sex}{year:02d}{month:02d}{place}{order:03d}"


@given(matricules())
def test_compute_key_makes_any_matricule_valid(nir13: str) -> None:
    """The computed key passes our checks and stdnum's."""
    value = nir13 + compute_key(nir13)

    assert check_ins(value, InsOid.NIR, PROD) == []
    assert key_is_valid(nir13, compute_key(nir13))
    assert nir.is_valid(value)


@given(matricules(), st.integers(0, 99))
def test_any_other_key_fails(nir13: str, key: int) -> None:
    """Every key but the computed one fails, and only the key check."""
    wrong = f"{key:02d}"
    if wrong == compute_key(nir13):
        wrong = f"{(key + 1) % 100:02d}"

    assert check_ins(nir13 + wrong, InsOid.NIR, PROD) == ["key"]
    assert not key_is_valid(nir13, wrong)


@pytest.mark.parametrize(
    ("nir13", "key"),
    [("1800320020401", "2"), ("180032B0204", "23"), ("18003XB020401", "23")],
)
def test_key_is_valid_never_raises(nir13: str, key: str) -> None:
    """Malformed input is simply not valid."""
    assert key_is_valid(nir13, key) is False
