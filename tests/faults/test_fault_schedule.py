"""The reduced fault schedule, as CI runs it: every fault kind once.

A few hundred requests through two real worker processes while each kind
of fault of :mod:`.injectors` hits once, at seeded moments. The servers
are restarted during the test and are up again when it ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .injectors import KINDS
from .schedule import RunConfig, run_schedule

pytestmark = pytest.mark.servers


async def test_reduced_schedule_loses_doubles_and_invents_nothing(
    tmp_path: Path,
) -> None:
    """lost = duplicated = unexpected = 0, every event, every dead letter."""
    config = RunConfig(
        requests=400,
        seed=11,
        rounds=1,
        publish_s=35.0,
        settle_timeout_s=90.0,
        workdir=tmp_path,
    )

    report = await run_schedule(config)

    shown = json.dumps(report.to_json()["figures"], indent=1)
    figures = report.figures
    assert {fault["kind"] for fault in report.faults} == set(KINDS)
    assert not [f for f in report.faults if "error" in f], report.faults
    assert figures.lost == [], shown
    assert figures.duplicated == [], shown
    assert figures.unexpected == [], shown
    assert figures.missing_event == [], shown
    assert figures.dead_letter_problems == [], shown
    assert figures.accepted == config.requests
    assert report.sigterm_ok, report.workers
    assert report.quiet_after_s is not None
    assert report.passed
