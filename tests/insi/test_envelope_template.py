"""The templated envelope is exactly the one zeep builds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from worker.insi.contract import Caller, Envelopes
from worker.insi.model import TraitsSearch

CALLER = Caller(
    "00000000",
    "urn:lps:ins-worker:test",
    "1.0",
    "b3c1a3f2-8d0e-4c55-9e61-0f3b2a7d9c10",
    "EMETTEUR-TEST",
)
NOW = datetime(2026, 12, 4, 8, 15, 2, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    "search",
    [
        TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01"),
        TraitsSearch("DE VINCI", (), "M", "2014-02-01", "63220"),
        TraitsSearch(
            "D'ARC", ("JEANNE", "MARIE", "ANNE"), "F", "1979-03-28", "51215"
        ),
        TraitsSearch("A & B <C>", ("É\"Q'",), "X", "1979-03-28"),
    ],
)
def test_templated_envelope_equals_zeeps(search: TraitsSearch) -> None:
    """Same bytes as zeep's own rendering, markup characters escaped."""
    envelopes = Envelopes(CALLER)

    message_id, templated = envelopes.build(search, now=NOW)
    context = re.search(rb"<[^>]*:Id>([^<]+)</", templated)
    assert context is not None
    _, reference = envelopes.build_with_zeep(
        search, now=NOW, ids=(context[1].decode(), message_id)
    )

    assert templated == reference


def test_each_call_gets_fresh_ids() -> None:
    """Two envelopes of one shape never share a MessageID or context Id."""
    envelopes = Envelopes(CALLER)
    search = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")

    first_id, first = envelopes.build(search)
    second_id, second = envelopes.build(search)

    assert first_id != second_id
    assert first.split(b"Id>")[1] != second.split(b"Id>")[1]
