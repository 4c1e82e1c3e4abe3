"""Counters of the calls the simulator received, by how each ended.

Outcomes are short labels from fixed sets: ``cr_00``/``cr_01``/``cr_02``
for results, ``fault_<detail code>`` for the faults the simulator
decided (``fault_desir_550``, ``fault_insi_24``, ``fault_simu_header``…)
and ``injected_<mode>`` for injected failures. ``canary_fetches``
counts fetches of the external-entity canary: a parser that resolves
external entities shows up there.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class CallStats:
    """Running totals, reset on demand."""

    def __init__(self) -> None:
        self._outcomes: Counter[str] = Counter()
        self.canary_fetches = 0

    @property
    def total(self) -> int:
        """Calls received on ``/lps``."""
        return sum(self._outcomes.values())

    def count(self, outcome: str) -> int:
        """Calls that ended with ``outcome``."""
        return self._outcomes[outcome]

    def record(self, outcome: str) -> None:
        """One more call that ended with ``outcome``."""
        self._outcomes[outcome] += 1

    def reset(self) -> None:
        """Back to zero."""
        self._outcomes.clear()
        self.canary_fetches = 0

    def to_json(self) -> dict[str, Any]:
        """``GET /_admin/stats``: total, per outcome, canary fetches."""
        return {
            "total": self.total,
            "by_outcome": dict(sorted(self._outcomes.items())),
            "canary_fetches": self.canary_fetches,
        }
