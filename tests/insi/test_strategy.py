"""The first-name strategy: the exact searches made, path by path."""

from __future__ import annotations

import pytest

from worker.errors import InsiTimeout
from worker.insi.model import SearchResult, TraitsSearch
from worker.insi.strategy import MAX_CALLS, search_with_first_names

Key = tuple[tuple[str, ...], str | None]


class FakeInsi:
    """Answers from a table of (Prenom elements, LieuNaissance) -> CodeCR.

    Searches not in the table answer ``default``; every search is kept.
    """

    def __init__(self, table: dict[Key, str], default: str = "01") -> None:
        self.table = table
        self.default = default
        self.calls: list[TraitsSearch] = []

    async def __call__(self, search: TraitsSearch) -> SearchResult:
        self.calls.append(search)
        code = self.table.get(
            (search.first_names, search.birth_place), self.default
        )
        return SearchResult(cr_code=code, cr_label=f"label {code}")

    @property
    def asked(self) -> list[Key]:
        return [(s.first_names, s.birth_place) for s in self.calls]


def _traits(*names: str, place: str | None = None) -> TraitsSearch:
    return TraitsSearch("ECETINSI", names, "M", "2009-07-14", place)


async def test_found_at_once_makes_one_call() -> None:
    """00 on the first first-name alone: nothing else is asked."""
    insi = FakeInsi({(("PIERRE-ALAIN",), None): "00"})

    outcome = await search_with_first_names(
        insi, _traits("PIERRE-ALAIN", "MURIEL", place="63220")
    )

    assert insi.asked == [(("PIERRE-ALAIN",), None)]
    assert outcome.result.cr_code == "00"
    assert outcome.searches == tuple(insi.calls)
    assert not outcome.truncated


async def test_not_found_then_found_on_the_second_first_name() -> None:
    """01, then the second first-name alone answers 00."""
    insi = FakeInsi({(("CATARINA",), None): "00"})

    outcome = await search_with_first_names(insi, _traits("OLA", "CATARINA"))

    assert insi.asked == [(("OLA",), None), (("CATARINA",), None)]
    assert outcome.result.cr_code == "00"


async def test_not_found_then_joined_first_names() -> None:
    """01 on each name alone, then all of them in one Prenom: 00."""
    joined = "PIERRE-ALAIN MURIEL FLORIANT"
    insi = FakeInsi({((joined,), None): "00"})

    outcome = await search_with_first_names(
        insi, _traits("PIERRE-ALAIN", "MURIEL", "FLORIANT", place="63220")
    )

    assert insi.asked == [
        (("PIERRE-ALAIN",), None),
        (("MURIEL",), None),
        (("FLORIANT",), None),
        ((joined,), None),
    ]
    assert outcome.result.cr_code == "00"
    assert all(len(s.first_names) == 1 for s in outcome.searches)


async def test_all_not_found_reports_not_found() -> None:
    """Every search 01: the outcome is 01, birth place never added."""
    insi = FakeInsi({})

    outcome = await search_with_first_names(
        insi, _traits("A", "B", "C", place="63220")
    )

    assert insi.asked == [
        (("A",), None),
        (("B",), None),
        (("C",), None),
        (("A B C",), None),
    ]
    assert outcome.result.cr_code == "01"
    assert not outcome.truncated


async def test_single_first_name_not_found_is_one_call() -> None:
    """One first name and 01: the joined search would be the same one."""
    insi = FakeInsi({})

    outcome = await search_with_first_names(insi, _traits("PIERRE"))

    assert insi.asked == [(("PIERRE",), None)]
    assert outcome.result.cr_code == "01"


async def test_several_then_first_names_then_birth_place() -> None:
    """02: the other first names are added, then the birth place: 00."""
    insi = FakeInsi({
        (("LEONARDO",), None): "02",
        (("LEONARDO DI SER PIERO",), None): "02",
        (("LEONARDO DI SER PIERO",), "99127"): "00",
    })

    outcome = await search_with_first_names(
        insi, _traits("LEONARDO", "DI SER PIERO", place="99127")
    )

    assert insi.asked == [
        (("LEONARDO",), None),
        (("LEONARDO DI SER PIERO",), None),
        (("LEONARDO DI SER PIERO",), "99127"),
    ]
    assert outcome.result.cr_code == "00"


async def test_several_with_one_first_name_goes_to_the_birth_place() -> None:
    """02 and a single first name: the birth place comes next."""
    insi = FakeInsi({
        (("LEONARDO",), None): "02",
        (("LEONARDO",), "99127"): "00",
    })

    outcome = await search_with_first_names(
        insi, _traits("LEONARDO", place="99127")
    )

    assert insi.asked == [(("LEONARDO",), None), (("LEONARDO",), "99127")]
    assert outcome.result.cr_code == "00"


async def test_several_without_birth_place_reports_several() -> None:
    """02 and no known birth place: first names added, then ambiguous."""
    insi = FakeInsi({
        (("LEONARDO",), None): "02",
        (("LEONARDO PIERO",), None): "02",
    })

    outcome = await search_with_first_names(
        insi, _traits("LEONARDO", "PIERO")
    )

    assert insi.asked == [
        (("LEONARDO",), None),
        (("LEONARDO PIERO",), None),
    ]
    assert outcome.result.cr_code == "02"
    assert all(s.birth_place is None for s in outcome.searches)


async def test_narrower_miss_does_not_hide_an_ambiguity() -> None:
    """02, then the joined names give 01: the place goes on the 02 one."""
    insi = FakeInsi({(("LEONARDO",), None): "02"})

    outcome = await search_with_first_names(
        insi, _traits("LEONARDO", "PIERO", place="99127")
    )

    assert insi.asked == [
        (("LEONARDO",), None),
        (("LEONARDO PIERO",), None),
        (("LEONARDO",), "99127"),
    ]
    assert outcome.result.cr_code == "02"


async def test_several_on_a_later_first_name_is_narrowed() -> None:
    """01 on the first name, 02 on the second: narrowing from there."""
    insi = FakeInsi({
        (("MARIE",), None): "02",
        (("MARIE",), "75056"): "00",
    })

    outcome = await search_with_first_names(
        insi, _traits("ANNE", "MARIE", "LOUISE", place="75056")
    )

    assert insi.asked == [
        (("ANNE",), None),
        (("MARIE",), None),
        (("ANNE MARIE LOUISE",), None),
        (("MARIE",), "75056"),
    ]
    assert outcome.result.cr_code == "00"


async def test_calls_are_bounded() -> None:
    """Many first names: at most max_calls searches, flagged truncated."""
    insi = FakeInsi({})
    names = tuple(f"N{'A' * i}" for i in range(10))

    outcome = await search_with_first_names(insi, _traits(*names))

    assert len(insi.calls) == MAX_CALLS
    assert outcome.truncated
    assert outcome.result.cr_code == "01"

    small = FakeInsi({})
    bounded = await search_with_first_names(
        small, _traits(*names), max_calls=2
    )
    assert len(small.calls) == 2 and bounded.truncated


async def test_same_search_is_never_repeated() -> None:
    """A repeated first name does not cost a second identical call."""
    insi = FakeInsi({})

    await search_with_first_names(insi, _traits("JEAN", "JEAN"))

    assert insi.asked == [(("JEAN",), None), (("JEAN JEAN",), None)]


async def test_no_first_name_searches_without_prenom() -> None:
    """No first name at all: one search without Prenom."""
    insi = FakeInsi({})

    await search_with_first_names(insi, _traits())

    assert insi.asked == [((), None)]


async def test_call_errors_propagate() -> None:
    """An exhausted call's error reaches the caller untouched."""
    async def failing(search: TraitsSearch) -> SearchResult:
        raise InsiTimeout("no reply")

    with pytest.raises(InsiTimeout):
        await search_with_first_names(failing, _traits("A", "B"))


async def test_max_calls_must_allow_one_call() -> None:
    """A bound below one is a programming error."""
    with pytest.raises(ValueError):
        await search_with_first_names(FakeInsi({}), _traits("A"), max_calls=0)
