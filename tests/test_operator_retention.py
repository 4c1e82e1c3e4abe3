"""``ins-worker purge``: the retention period of raw XML and sent events."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import pytest

from worker import operator_cli, retention
from worker.settings import Settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("365d", timedelta(days=365)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("90s", timedelta(seconds=90)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_durations_are_a_number_and_a_unit(
    text: str, expected: timedelta
) -> None:
    """Each unit the command accepts, case and spaces aside."""
    assert retention.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "d", "12", "1y", "-3d", "1.5h"])
def test_other_durations_are_refused(text: str) -> None:
    """No unit, no number, zero, negative or fractional: an error."""
    with pytest.raises(ValueError):
        retention.parse_duration(text)


async def add_request(db: Any) -> str:
    """A finished request to hang calls and events on."""
    request_id = str(uuid.uuid4())
    await db.execute(
        "INSERT INTO requests (request_id, state, outcome)"
        " VALUES ($1, 'done', 'qualified')",
        request_id,
    )
    return request_id


async def add_call(db: Any, request_id: str, age: timedelta) -> int:
    """An INSi exchange made ``age`` ago, with its raw XML."""
    call_id: int = await db.fetchval(
        """
        INSERT INTO insi_calls (request_id, delivery, operation, message_id,
            started_at, duration_ms, http_status, cr_code, search,
            request_xml, response_xml, certificate)
        VALUES ($1, 1, 'rechercherInsAvecTraitsIdentite', $2,
                now() - $3::interval, 12.5, 200, '00', '{}',
                '<request/>', '<response/>', 'sha256:ab')
        RETURNING id
        """,
        request_id,
        str(uuid.uuid4()),
        age,
    )
    return call_id


async def add_event(
    db: Any, request_id: str, age: timedelta, *, sent: bool
) -> str:
    """An outbox row created ``age`` ago, sent then if ``sent``."""
    event_id = str(uuid.uuid4())
    await db.execute(
        """
        INSERT INTO outbox (event_id, request_id, event_type, routing_key,
            body, created_at, sent_at)
        VALUES ($1, $2, 'qualified', 'identity.qualified', '{}',
                now() - $3::interval,
                CASE WHEN $4 THEN now() - $3::interval END)
        """,
        event_id,
        request_id,
        age,
        sent,
    )
    return event_id


async def raw_kept(db: Any) -> dict[int, bool]:
    """Per call id: whether its raw XML is still there."""
    rows = await db.fetch(
        "SELECT id, request_xml IS NOT NULL AND response_xml IS NOT NULL"
        " AS kept FROM insi_calls"
    )
    return {r["id"]: r["kept"] for r in rows}


OLD = timedelta(days=400)
RECENT = timedelta(days=3)
YEAR = timedelta(days=365)


@pytest.mark.servers
async def test_purge_drops_old_raw_xml_but_keeps_the_call_row(db: Any) -> None:
    """Old exchanges lose their XML only; recent ones keep everything."""
    request_id = await add_request(db)
    old = await add_call(db, request_id, OLD)
    recent = await add_call(db, request_id, RECENT)

    report = await retention.purge(db, YEAR)

    assert report.raw_exchanges == 1
    assert await raw_kept(db) == {old: False, recent: True}
    row = await db.fetchrow("SELECT * FROM insi_calls WHERE id = $1", old)
    assert row["raw_purged_at"] is not None
    assert (row["cr_code"], row["http_status"], row["certificate"]) == (
        "00",
        200,
        "sha256:ab",
    )


@pytest.mark.servers
async def test_purge_deletes_old_sent_events_only(db: Any) -> None:
    """Sent long ago: gone; unsent, however old, or recent: kept."""
    request_id = await add_request(db)
    await add_event(db, request_id, OLD, sent=True)
    unsent = await add_event(db, request_id, OLD, sent=False)
    recent = await add_event(db, request_id, RECENT, sent=True)

    report = await retention.purge(db, YEAR)

    left = {str(r["event_id"]) for r in await db.fetch("SELECT * FROM outbox")}
    assert report.sent_events == 1
    assert left == {unsent, recent}


@pytest.mark.servers
async def test_dry_run_counts_and_changes_nothing(db: Any) -> None:
    """``--dry-run`` reports what would go and leaves every row."""
    request_id = await add_request(db)
    calls = [await add_call(db, request_id, OLD) for _ in range(2)]
    await add_event(db, request_id, OLD, sent=True)

    report = await retention.purge(db, YEAR, dry_run=True)

    assert (report.raw_exchanges, report.sent_events) == (2, 1)
    assert report.dry_run
    assert await raw_kept(db) == dict.fromkeys(calls, True)
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1


@pytest.mark.servers
async def test_small_batches_still_purge_everything(db: Any) -> None:
    """Batches of two over five rows: every old row is handled."""
    request_id = await add_request(db)
    calls = [await add_call(db, request_id, OLD) for _ in range(5)]
    for _ in range(5):
        await add_event(db, request_id, OLD, sent=True)

    report = await retention.purge(db, YEAR, batch_size=2)

    assert (report.raw_exchanges, report.sent_events) == (5, 5)
    assert await raw_kept(db) == dict.fromkeys(calls, False)


@pytest.mark.servers
async def test_second_purge_finds_nothing_left(db: Any) -> None:
    """A purged exchange is not counted again."""
    request_id = await add_request(db)
    await add_call(db, request_id, OLD)
    await retention.purge(db, YEAR)

    again = await retention.purge(db, YEAR, dry_run=True)

    assert (again.raw_exchanges, again.sent_events) == (0, 0)


def cli_args(*argv: str) -> argparse.Namespace:
    """The operator commands' arguments, parsed as the CLI does."""
    parser = argparse.ArgumentParser(prog="ins-worker")
    operator_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.servers
async def test_purge_command_defaults_to_the_configured_retention(
    db: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """No ``--older-than``: INS_WORKER_RAW_RETENTION_DAYS applies."""
    request_id = await add_request(db)
    kept = await add_call(db, request_id, timedelta(days=20))
    gone = await add_call(db, request_id, timedelta(days=40))
    monthly = dataclasses.replace(settings, raw_retention_days=30)
    args = cli_args("purge")

    status = await asyncio.to_thread(args.func, args, monthly)

    out = capsys.readouterr().out
    assert status == 0
    assert "raw INSi exchanges were purged: 1" in out
    assert await raw_kept(db) == {kept: True, gone: False}


@pytest.mark.servers
async def test_purge_command_dry_run_prints_counts(
    db: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """``purge --older-than 12h --dry-run`` prints what would go."""
    request_id = await add_request(db)
    await add_call(db, request_id, timedelta(hours=13))
    await add_event(db, request_id, timedelta(hours=13), sent=True)
    args = cli_args("purge", "--older-than", "12h", "--dry-run")

    status = await asyncio.to_thread(args.func, args, settings)

    out = capsys.readouterr().out
    assert status == 0
    assert "raw INSi exchanges would be purged: 1" in out
    assert "sent events would be deleted: 1" in out
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1


def test_purge_command_refuses_a_bad_duration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--older-than 0d`` is a usage error, before any connection."""
    with pytest.raises(SystemExit) as exit_info:
        cli_args("purge", "--older-than", "0d")

    assert exit_info.value.code == 2
    assert "longer than zero" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(days=365), "365d"),
        (timedelta(weeks=2), "2w"),
        (timedelta(hours=12), "12h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=61), "61s"),
    ],
)
def test_durations_print_in_their_largest_exact_unit(
    duration: timedelta, text: str
) -> None:
    """What the purge prints reads like what an operator types."""
    assert retention.format_duration(duration) == text
    assert retention.parse_duration(text) == duration
