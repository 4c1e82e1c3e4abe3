"""Fixtures for the domain rules: the kit's genuine answers as values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.insi.model import ReturnedIns, ReturnedTraits, SearchResult


def _ins(entry: dict[str, Any]) -> ReturnedIns:
    return ReturnedIns(
        nir13=entry["nir13"],
        key=entry["key"],
        oid=entry["oid"],
        type=entry["type"],
        start=entry["start"],
        end=entry["end"],
    )


def _traits(entry: dict[str, Any]) -> ReturnedTraits:
    return ReturnedTraits(
        birth_name=entry["NomNaissance"],
        first_name_sent=entry["Prenom"],
        first_names_list=entry["ListePrenom"],
        sex=entry["Sexe"],
        birth_date=entry["DateNaissance"],
        birth_place=entry["LieuNaissance"],
    )


@pytest.fixture(scope="session")
def kit_expected(insi_kit: Path) -> dict[str, Any]:
    """The kit's expected.json: what each genuine file parses to."""
    data: dict[str, Any] = json.loads(
        (insi_kit / "expected.json").read_text(encoding="utf-8")
    )
    return data


@pytest.fixture(scope="session")
def kit_results(kit_expected: dict[str, Any]) -> dict[str, SearchResult]:
    """Every genuine INSi result of the kit, as the parser gives it."""
    results: dict[str, SearchResult] = {}
    for name, entry in kit_expected.items():
        if not isinstance(entry, dict) or entry.get("kind") != "result":
            continue
        active = entry.get("active")
        traits = entry.get("traits")
        results[name] = SearchResult(
            cr_code=entry["cr_code"],
            cr_label=entry["cr_label"],
            active=None if active is None else _ins(active),
            history=tuple(_ins(h) for h in entry.get("history", [])),
            traits=None if traits is None else _traits(traits),
        )
    return results
