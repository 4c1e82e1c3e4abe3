"""Normalised copies of traits and the desk/registry comparison."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.domain.request import DeskTraits
from worker.domain.traits import (
    compare,
    comparison_copy,
    normalise_for_insi,
)
from worker.errors import RequestRefused
from worker.insi.model import ReturnedTraits

INSI_ALPHABET = re.compile(r"[A-Z' -]*")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ecetinsi", "ECETINSI"),
        ("Éloïse", "ELOISE"),
        ("Nguyễn", "NGUYEN"),
        ("François", "FRANCOIS"),
        ("  de   la  Fontaine ", "DE LA FONTAINE"),
        ("Anne\tMarie\n", "ANNE MARIE"),
        ("Anne\u00a0Marie", "ANNE MARIE"),
        ("d\u2019Arc", "D'ARC"),
        ("d\u2018Arc", "D'ARC"),
        ("d\u02bcArc", "D'ARC"),
        ("d`Arc", "D'ARC"),
        ("d\u00b4Arc", "D'ARC"),
        ("d'Arc", "D'ARC"),
        ("Jean\u2010Pierre", "JEAN-PIERRE"),
        ("Jean\u2011Pierre", "JEAN-PIERRE"),
        ("Jean\u2013Pierre", "JEAN-PIERRE"),
        ("Jean\u2212Pierre", "JEAN-PIERRE"),
        ("Dupont--Durand", "DUPONT--DURAND"),
        ("Lætitia", "LAETITIA"),
        ("ÆSA", "AESA"),
        ("Œdipe", "OEDIPE"),
        ("cœur", "COEUR"),
        ("Strauß", "STRAUSS"),
        ("STRAUẞ", "STRAUSS"),
        ("Øyvind", "OYVIND"),
        ("Łukasz", "LUKASZ"),
        ("Đorđe", "DORDE"),
        ("\ufb01lou", "FILOU"),
        ("\uff2darie", "MARIE"),
        ("Ma\u00adrie", "MARIE"),
        ("Ma\u200brie", "MARIE"),
    ],
)
def test_names_are_normalised_for_insi(raw: str, expected: str) -> None:
    """Case, diacritics, ligatures, apostrophes, hyphens and spaces."""
    assert normalise_for_insi(raw, "traits.birth_name") == expected
    assert comparison_copy(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "Smith2",
        "Иван",
        "O.Brien",
        "张伟",
        "Anne/Marie",
        "Zoé\U0001f600",
        "Anne_Marie",
        "Marie (dite)",
        "Jean\u00b7Pierre",
    ],
)
def test_what_cannot_be_normalised_is_refused(raw: str) -> None:
    """Digits, other scripts and punctuation are refused, field named."""
    with pytest.raises(RequestRefused) as caught:
        normalise_for_insi(raw, "traits.first_names[0]")

    assert caught.value.reason == "unsupported_characters"
    assert "traits.first_names[0]" in caught.value.detail
    assert raw not in str(caught.value)
    assert comparison_copy(raw.upper()) not in str(caught.value)


@pytest.mark.parametrize("raw", ["", "   ", "'", "-", "' -"])
def test_a_name_without_any_letter_is_refused(raw: str) -> None:
    """A name must keep at least one letter."""
    with pytest.raises(RequestRefused) as caught:
        normalise_for_insi(raw, "traits.birth_name")

    assert caught.value.reason == "missing_trait"
    assert "traits.birth_name" in caught.value.detail


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Иван", "ИВАН"), ("Smith2", "SMITH2"), (None, ""), ("", "")],
)
def test_the_comparison_copy_never_raises(
    raw: str | None, expected: str
) -> None:
    """What INSi cannot take is kept in the comparison copy."""
    assert comparison_copy(raw) == expected


@given(st.text())
def test_the_comparison_copy_is_idempotent(raw: str) -> None:
    """Normalising a normalised copy changes nothing."""
    once = comparison_copy(raw)

    assert comparison_copy(once) == once
    assert once == once.strip()
    assert "  " not in once


@given(st.text())
def test_the_insi_copy_is_idempotent_and_in_the_insi_alphabet(
    raw: str,
) -> None:
    """Whatever is accepted is uppercase A-Z, space, ' and -, trimmed."""
    try:
        once = normalise_for_insi(raw, "f")
    except RequestRefused as refused:
        assert refused.reason in ("unsupported_characters", "missing_trait")
        return

    assert INSI_ALPHABET.fullmatch(once)
    assert re.search(r"[A-Z]", once)
    assert once == once.strip() and "  " not in once
    assert normalise_for_insi(once, "f") == once


_ONE_FOR_ONE = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyzABCXYZ")
    + list("éèêëàâäîïôöùûüçÿñÉÈÀÇÔÜ'-")
)
_LIGATURES = st.sampled_from(list("æœßÆŒ"))
_SPACES = st.sampled_from([" ", "  ", "\t", "\u00a0"])


@given(st.lists(st.one_of(_ONE_FOR_ONE, _SPACES), min_size=1))
def test_letters_keep_their_length_once_spaces_collapse(
    parts: list[str],
) -> None:
    """One letter gives one letter; only white space runs shrink."""
    raw = "".join(parts)

    collapsed = " ".join(raw.split())
    assert len(comparison_copy(raw)) == len(collapsed)


@given(st.lists(st.one_of(_ONE_FOR_ONE, _LIGATURES), min_size=1))
def test_each_ligature_adds_exactly_one_letter(parts: list[str]) -> None:
    """Æ, Œ and ß expand to two letters each, nothing else grows."""
    raw = "".join(parts)

    ligatures = sum(1 for c in raw if c in "æœßÆŒ")
    assert len(comparison_copy(raw)) == len(raw) + ligatures


@given(
    st.text(_ONE_FOR_ONE, min_size=1),
    _LIGATURES,
    st.text(_ONE_FOR_ONE, min_size=1),
)
def test_a_ligature_expands_in_place(
    before: str, ligature: str, after: str
) -> None:
    """The expansion sits where the ligature was."""
    expansion = {"æ": "AE", "Æ": "AE", "œ": "OE", "Œ": "OE", "ß": "SS"}

    assert comparison_copy(before + ligature + after) == (
        comparison_copy(before) + expansion[ligature] + comparison_copy(after)
    )


REGISTRY = ReturnedTraits(
    birth_name="ECETINSI",
    first_name_sent=None,
    first_names_list="PIERRE-ALAIN MURIEL FLORIANT",
    sex="M",
    birth_date="2009-07-14",
    birth_place="63220",
)
DESK = DeskTraits(
    birth_name="Ecetinsi",
    first_names=("Pierre-Alain",),
    sex="M",
    birth_date="2009-07-14",
    birth_place="63220",
)


@pytest.mark.parametrize(
    ("desk", "expected"),
    [
        (DESK, []),
        (
            DeskTraits("écetinsi ", ("pierre\u2010alain",), "m", "2009-07-14"),
            [],
        ),
        (
            DeskTraits("ECETINSY", ("PIERRE-ALAIN",), "M", "2009-07-14"),
            ["birth_name"],
        ),
        (
            DeskTraits("ECETINSI", ("PIERRE ALAIN",), "M", "2009-07-14"),
            ["first_name"],
        ),
        (
            DeskTraits("ECETINSI", ("MURIEL",), "M", "2009-07-14"),
            ["first_name"],
        ),
        (DeskTraits("ECETINSI", (), "M", "2009-07-14"), ["first_name"]),
        (
            DeskTraits(
                "ECETINSI", ("PIERRE-ALAIN", "MURIEL"), "M", "2009-07-14"
            ),
            [],
        ),
        (
            DeskTraits(
                "ECETINSI",
                ("PIERRE-ALAIN MURIEL FLORIANT",),
                "M",
                "2009-07-14",
            ),
            [],
        ),
        (
            DeskTraits(
                "ECETINSI", ("PIERRE-ALAIN", "FLORIANT"), "M", "2009-07-14"
            ),
            ["first_names"],
        ),
        (
            DeskTraits(
                "ECETINSI",
                ("PIERRE-ALAIN", "MURIEL", "FLORIANT", "JEAN"),
                "M",
                "2009-07-14",
            ),
            ["first_names"],
        ),
        (
            DeskTraits("ECETINSI", ("PIERRE-ALAIN",), "F", "2009-07-14"),
            ["sex"],
        ),
        (
            DeskTraits("ECETINSI", ("PIERRE-ALAIN",), "M", "2009-07-15"),
            ["birth_date"],
        ),
        (
            DeskTraits(
                "ECETINSI", ("PIERRE-ALAIN",), "M", "2009-07-14", "63113"
            ),
            ["birth_place"],
        ),
        (
            DeskTraits("ECETINSI", ("PIERRE-ALAIN",), "M", "2009-07-14", None),
            [],
        ),
        (
            DeskTraits("DUPONT", ("JEAN",), "F", "2001-01-01", "75056"),
            ["birth_name", "first_name", "sex", "birth_date", "birth_place"],
        ),
    ],
)
def test_compare_names_each_disagreeing_trait(
    desk: DeskTraits, expected: list[str]
) -> None:
    """Birth name, first name(s), sex, birth date and birth place."""
    assert compare(desk, REGISTRY) == expected


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (
            ReturnedTraits(
                "ECETINSI", None, "PIERRE-ALAIN", "M", "2009-07-14", None
            ),
            [],
        ),
        (
            ReturnedTraits(
                None, None, "PIERRE-ALAIN", "M", "2009-07-14", "63220"
            ),
            ["birth_name"],
        ),
        (
            ReturnedTraits("ECETINSI", None, None, "M", "2009-07-14", "63220"),
            ["first_name"],
        ),
        (
            ReturnedTraits(
                "ECETINSI", None, "PIERRE-ALAIN", None, "2009-07-14", "63220"
            ),
            ["sex"],
        ),
        (
            ReturnedTraits(
                "ECETINSI", None, "PIERRE-ALAIN", "M", None, "63220"
            ),
            ["birth_date"],
        ),
        # the CNDA dialect: Prenom given besides the list
        (
            ReturnedTraits(
                "ECETINSI",
                "PIERRE-ALAIN",
                "PIERRE-ALAIN",
                "M",
                "2009-07-14",
                "63220",
            ),
            [],
        ),
    ],
)
def test_what_the_registry_left_out_is_handled(
    returned: ReturnedTraits, expected: list[str]
) -> None:
    """A missing birth place is skipped; any other missing trait differs."""
    assert compare(DESK, returned) == expected
