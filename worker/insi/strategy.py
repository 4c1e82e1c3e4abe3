"""The first-name strategy: which traits searches to make, in what order.

A pure function of the normalised traits and of INSi's answers: the
caller passes ``call``, which makes one search (with its retries,
breaker and audit record) and returns its `SearchResult`. Exceptions of
``call`` propagate untouched; the searches already made were recorded
by ``call`` itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from worker.insi.model import CodeCR, SearchResult, TraitsSearch

Call = Callable[[TraitsSearch], Awaitable[SearchResult]]

#: enough for every path with up to four first names
MAX_CALLS = 6


@dataclass(frozen=True, slots=True)
class Step:
    """One search made and what INSi answered."""

    search: TraitsSearch
    result: SearchResult


@dataclass(frozen=True, slots=True)
class StrategyOutcome:
    """The answer to report and every search that led to it.

    ``truncated`` is true when the strategy still had searches to make
    but ``max_calls`` stopped it.
    """

    result: SearchResult
    steps: tuple[Step, ...]
    truncated: bool = False

    @property
    def searches(self) -> tuple[TraitsSearch, ...]:
        """The searches made, in order."""
        return tuple(step.search for step in self.steps)


class _Found(Exception):
    """Control flow: a 00 ends the strategy."""


class _Exhausted(Exception):
    """Control flow: the call budget ends the strategy."""


class _Run:
    def __init__(self, call: Call, traits: TraitsSearch, max_calls: int):
        self.call = call
        self.traits = traits
        self.max_calls = max_calls
        self.steps: list[Step] = []

    async def ask(
        self, first_names: tuple[str, ...], place: str | None = None
    ) -> SearchResult:
        search = replace(
            self.traits, first_names=first_names, birth_place=place
        )
        # The same search twice would only add a traced call.
        for step in self.steps:
            if step.search == search:
                return step.result

        if len(self.steps) >= self.max_calls:
            raise _Exhausted
        result = await self.call(search)
        self.steps.append(Step(search, result))

        if result.cr_code == CodeCR.FOUND:
            raise _Found
        return result

    def outcome(self, truncated: bool) -> StrategyOutcome:
        results = [step.result for step in self.steps]
        found = [r for r in results if r.cr_code == CodeCR.FOUND]
        several = [r for r in results if r.cr_code == CodeCR.SEVERAL]
        # A narrower search's 01 must not hide that several people
        # matched a broader one: report the ambiguity.
        final = (found or several or results)[-1]
        return StrategyOutcome(final, tuple(self.steps), truncated)


async def _narrow(run: _Run, ambiguous: tuple[str, ...]) -> None:
    names = run.traits.first_names
    joined = (" ".join(names),)
    base = ambiguous

    if len(names) > 1 and ambiguous != joined:
        result = await run.ask(joined)
        if result.cr_code == CodeCR.SEVERAL:
            base = joined

    if run.traits.birth_place:
        await run.ask(base, run.traits.birth_place)


async def _search(run: _Run) -> None:
    names = run.traits.first_names
    first = names[:1]

    result = await run.ask(first)
    if result.cr_code == CodeCR.SEVERAL:
        await _narrow(run, first)
        return

    for name in names[1:]:
        result = await run.ask((name,))
        if result.cr_code == CodeCR.SEVERAL:
            await _narrow(run, (name,))
            return

    if len(names) > 1:
        joined = (" ".join(names),)
        result = await run.ask(joined)
        if result.cr_code == CodeCR.SEVERAL:
            await _narrow(run, joined)


async def search_with_first_names(
    call: Call, traits: TraitsSearch, *, max_calls: int = MAX_CALLS
) -> StrategyOutcome:
    """Search INSi for ``traits`` the way the contract describes.

    ``traits`` holds every first name, in order, and the birth place if
    known (``None`` otherwise). With first names F1, F2, F3:

    1. ``Prenom=F1`` alone, no birth place.
    2. On ``01``: ``Prenom=F2``, then ``Prenom=F3``, each alone; then
       ``Prenom="F1 F2 F3"`` (one element, single spaces).
    3. On ``02``, after whichever search drew it: ``Prenom="F1 F2 F3"``
       (unless that search was already it, or there is one first name),
       then, if the birth place is known, the same search as the one
       that last answered ``02``, with ``LieuNaissance`` added. Nothing
       follows the narrowing.
    4. The first ``00`` ends the strategy. A search already made is
       never repeated, and at most ``max_calls`` calls are made.

    The result reported is the ``00`` if any, else the last ``02`` if
    any (a narrower search that found no one does not cancel an
    ambiguity), else the last ``01``.
    """
    if max_calls < 1:
        raise ValueError("max_calls must be at least 1")
    run = _Run(call, traits, max_calls)

    truncated = False
    try:
        await _search(run)
    except _Found:
        pass
    except _Exhausted:
        truncated = True
    return run.outcome(truncated)
