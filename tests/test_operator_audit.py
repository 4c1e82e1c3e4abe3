"""``ins-worker audit REQUEST_ID``: one request's history, data-minimal."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from worker_harness import CN, request_body, running_worker, traits

from worker import audit, operator_cli, retention
from worker.settings import Settings
from worker.simulator.dataset import default_identities

pytestmark = pytest.mark.servers

# The public test person DE VINCI LEONARDO born in 63220: a 02 without
# the birth place, then a 00 with it (two INSi calls).
DE_VINCI = traits("De Vinci", ["Leonardo"], "M", "2014-02-01", "63220")
INS = next(
    i.active.nir13 + i.active.key
    for i in default_identities()
    if (i.birth_name, i.birth_place) == ("DE VINCI", "63220")
)
PATIENT = "ipp/audit-1"
PERSONAL = ("DE VINCI", "LEONARDO", "2014-02-01", "63220", INS, PATIENT)


async def qualified_request(settings: Settings, db: Any) -> str:
    """Run one request through the worker; return its id."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(DE_VINCI, document=CN, patient=PATIENT)
        await w.publish(body)
        await w.outcome(request_id)
        await w.take_events(1)
    return request_id


def cli_args(*argv: str) -> argparse.Namespace:
    """The operator commands' arguments, parsed as the CLI does."""
    parser = argparse.ArgumentParser(prog="ins-worker")
    operator_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def run_audit(
    settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    """(status, stdout, stderr) of ``ins-worker audit ...``."""
    args = cli_args("audit", *argv)
    status: int = await asyncio.to_thread(args.func, args, settings)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def test_audit_shows_the_whole_history_without_personal_data(
    settings: Settings, db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """State, steps, both INSi calls and the event; no trait, no INS."""
    request_id = await qualified_request(settings, db)

    status, out, _ = await run_audit(settings, capsys, request_id)

    assert status == 0
    assert f"request {request_id}" in out
    assert "qualified" in out
    assert "CodeCR 02" in out and "CodeCR 00" in out
    assert "fr.ins.identity.qualified" in out
    assert "NOT SENT" not in out
    for value in PERSONAL:
        assert value not in out


async def test_audit_json_lists_calls_with_their_trace_fields(
    settings: Settings, db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json``: message id, duration, HTTP status, code per call."""
    request_id = await qualified_request(settings, db)
    stored = await db.fetch(
        "SELECT message_id FROM insi_calls WHERE request_id = $1"
        " ORDER BY started_at, id",
        request_id,
    )

    status, out, _ = await run_audit(settings, capsys, request_id, "--json")

    report = json.loads(out)
    calls = report["insi_calls"]
    assert status == 0
    assert report["request"]["outcome"] == "qualified"
    assert report["request"]["deliveries"] == 1
    assert [c["message_id"] for c in calls] == [
        r["message_id"] for r in stored
    ]
    assert [c["cr_code"] for c in calls] == ["02", "00"]
    assert all(c["http_status"] == 200 for c in calls)
    assert all(c["duration_ms"] > 0 for c in calls)
    assert [s["step"] for s in report["steps"]] == ["outcome"]
    assert report["events"][0]["sent"] is True
    assert report["identity"]["status"] == "QUAL"
    assert "traits_sent" not in calls[0]
    assert "ins" not in report["identity"]
    for value in PERSONAL:
        assert value not in out


async def test_personal_data_shows_only_when_asked(
    settings: Settings, db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--show-personal-data``: traits sent, INS, stored traits."""
    request_id = await qualified_request(settings, db)

    status, out, _ = await run_audit(
        settings, capsys, request_id, "--json", "--show-personal-data"
    )

    report = json.loads(out)
    first, second = report["insi_calls"]
    assert status == 0
    assert first["traits_sent"]["birth_name"] == "DE VINCI"
    assert first["traits_sent"]["birth_place"] is None
    assert second["traits_sent"]["birth_place"] == "63220"
    assert report["identity"]["ins"] == INS
    assert report["identity"]["traits"]["birth_name"] == "DE VINCI"
    assert report["request"]["patient_ref"] == PATIENT
    assert "request_xml" not in first


async def test_raw_dumps_the_xml_as_exchanged(
    settings: Settings, db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--raw``: each call's request and response XML, byte for byte."""
    request_id = await qualified_request(settings, db)
    stored = await db.fetch(
        "SELECT request_xml, response_xml FROM insi_calls"
        " WHERE request_id = $1 ORDER BY started_at, id",
        request_id,
    )

    status, out, _ = await run_audit(
        settings, capsys, request_id, "--json", "--show-personal-data", "--raw"
    )

    calls = json.loads(out)["insi_calls"]
    assert status == 0
    assert [c["request_xml"].encode() for c in calls] == [
        r["request_xml"] for r in stored
    ]
    assert [c["response_xml"].encode() for c in calls] == [
        r["response_xml"] for r in stored
    ]


async def test_raw_alone_is_refused(
    settings: Settings, db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--raw`` without ``--show-personal-data``: usage error, no data."""
    status, out, err = await run_audit(
        settings, capsys, str(uuid.uuid4()), "--raw"
    )

    assert status == 2
    assert out == ""
    assert "--show-personal-data" in err


async def test_unknown_request_id_exits_1_with_a_message(
    settings: Settings, db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A well-formed id nobody sent: exit 1, says so."""
    unknown = str(uuid.uuid4())

    status, out, err = await run_audit(settings, capsys, unknown)

    assert status == 1
    assert out == ""
    assert f"no request {unknown}" in err


@pytest.mark.parametrize("text", ["42", "not-a-uuid", "'; DROP TABLE x"])
async def test_malformed_request_id_exits_1_with_a_message(
    text: str,
    settings: Settings,
    db: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Anything but a UUID: exit 1 before touching the database."""
    status, out, err = await run_audit(settings, capsys, text)

    assert status == 1
    assert out == ""
    assert "not a request id" in err


async def test_audit_after_purge_says_the_raw_xml_is_gone(
    settings: Settings, db: Any
) -> None:
    """A purged call keeps its trace and is marked purged."""
    request_id = await qualified_request(settings, db)
    await db.execute(
        "UPDATE insi_calls SET started_at = started_at - interval '400 days'"
    )
    await retention.purge(db, timedelta(days=365))

    report = await audit.collect(db, request_id, personal=True, raw=True)

    assert report is not None
    for call in report["insi_calls"]:
        assert call["raw_purged_at"] is not None
        assert call["request_xml"] is None
        assert call["cr_code"] in ("00", "02")
    assert "raw XML purged" in audit.render_text(report)


async def test_request_refused_before_insi_has_no_call(
    settings: Settings, db: Any
) -> None:
    """A rejected request's audit: its reason, zero INSi calls."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(DE_VINCI, attributes=["douteuse"])
        await w.publish(body)
        await w.outcome(request_id)

    report = await audit.collect(db, request_id)

    assert report is not None
    assert report["request"]["outcome"] == "rejected"
    assert report["request"]["reason"] == "douteuse"
    assert report["insi_calls"] == []
    assert [e["type"] for e in report["events"]] == [
        "fr.ins.identity.rejected"
    ]


async def test_audit_connects_as_the_schema_owner(
    settings: Settings, db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker's role may not read the audit trail: the owner's URL."""
    request_id = await qualified_request(settings, db)
    owner = dataclasses.replace(
        settings,
        database_url="postgresql://nobody@127.0.0.1:1/none",
        migrate_database_url=settings.database_url,
    )

    status, out, _ = await run_audit(owner, capsys, request_id)

    assert status == 0
    assert f"request {request_id}" in out
