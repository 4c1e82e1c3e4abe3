"""The main job through the real broker and database, INSi simulated."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from worker_harness import (
    CN,
    request_body,
    running_worker,
    traits,
    validate_event,
)

from worker.events import event_id
from worker.settings import Settings
from worker.simulator.faults import FaultMode
from worker.simulator.server import Simulator

pytestmark = pytest.mark.servers

ADRTROIS = traits("Adrtrois", ["Toussaint"], "M", "1960-01-01")
HOUILLES = traits("Houilles", ["Pierre"], "M", "1993-01-27")
DE_VINCI = traits("De Vinci", ["Leonardo"], "M", "2014-02-01")


async def test_found_identity_is_stored_qualified_and_published(
    settings: Settings, db: Any
) -> None:
    """A 00 with a checked ID card: outcome, call, identity and event."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(ADRTROIS, document=CN)
        await w.publish(body)

        row = await w.outcome(request_id)
        [event] = await w.take_events(1)

        assert row["outcome"] == "qualified"
        calls = await db.fetch(
            "SELECT * FROM insi_calls WHERE request_id = $1", request_id
        )
        assert [c["cr_code"] for c in calls] == ["00"]
        assert b"RECSANSVITALE" in calls[0]["request_xml"]
        assert b"RESULTAT" in calls[0]["response_xml"]
        identity = await db.fetchrow(
            "SELECT * FROM identities WHERE patient_ref = 'ipp/000123'"
        )
        assert identity["status"] == "QUAL"
        assert identity["ins"] == "160012B02077713"
        assert identity["traits"]["birth_name"] == "ADRTROIS"
        validate_event(event)
        assert event["type"] == "fr.ins.identity.qualified"
        assert event["id"] == event_id(request_id, "qualified")
        assert event["subject"] == "ipp/000123"
        assert event["data"]["ins"]["value"] == "160012B02077713"
        unsent = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
        )
        assert unsent == 0


async def test_unknown_identity_is_reported_not_found(
    settings: Settings, db: Any
) -> None:
    """A 01: ``not_found`` outcome and event, no INS anywhere."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(HOUILLES, document=CN)
        await w.publish(body)

        row = await w.outcome(request_id)
        [event] = await w.take_events(1)

        assert row["outcome"] == "not_found"
        validate_event(event)
        assert event["type"] == "fr.ins.identity.not_found"
        assert event["data"]["ins"] is None


async def test_several_identities_are_reported_ambiguous(
    settings: Settings, db: Any
) -> None:
    """A 02 without a birth place to narrow it: ``ambiguous``."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(DE_VINCI, document=CN)
        await w.publish(body)

        row = await w.outcome(request_id)
        [event] = await w.take_events(1)

        assert row["outcome"] == "ambiguous"
        assert event["type"] == "fr.ins.identity.ambiguous"
        validate_event(event)


async def test_birth_place_resolves_an_ambiguous_search(
    settings: Settings, db: Any
) -> None:
    """A 02, then the birth place added: one identity, qualified."""
    async with running_worker(settings, db) as w:
        known = dict(DE_VINCI, birth_place="63220")
        request_id, body = request_body(known, document=CN)
        await w.publish(body)

        row = await w.outcome(request_id)

        codes = await db.fetch(
            "SELECT cr_code, search FROM insi_calls WHERE request_id = $1"
            " ORDER BY id",
            request_id,
        )
        assert row["outcome"] == "qualified"
        assert [c["cr_code"] for c in codes] == ["02", "00"]
        assert codes[0]["search"]["birth_place"] is None
        assert codes[1]["search"]["birth_place"] == "63220"


async def test_transient_fault_is_retried_then_succeeds(
    settings: Settings, db: Any
) -> None:
    """A siram_40 fault, then success: both calls audited, one outcome."""
    simulator = Simulator()
    simulator.fail_next(FaultMode.BACKEND_ERROR, 1)
    async with running_worker(settings, db, simulator) as w:
        request_id, body = request_body(ADRTROIS, document=CN)
        await w.publish(body)

        row = await w.outcome(request_id)

        calls = await db.fetch(
            "SELECT cr_code, fault_code, error_kind FROM insi_calls"
            " WHERE request_id = $1 ORDER BY id",
            request_id,
        )
        assert row["outcome"] == "qualified"
        assert calls[0]["fault_code"] == "siram_40/insi_102"
        assert calls[0]["error_kind"] == "fault_transient"
        assert calls[1]["cr_code"] == "00"
        assert simulator.stats.total == 2


async def test_permanent_fault_fails_the_request_and_halts_consumption(
    settings: Settings, db: Any
) -> None:
    """An unknown IDAM: ``failed`` once, the rest stay in the queue."""
    simulator = Simulator(allowed_idam=("99999999",))
    async with running_worker(settings, db, simulator) as w:
        first, body = request_body(ADRTROIS, document=CN)
        await w.publish(body)
        row = await w.outcome(first)
        [event] = await w.take_events(1)
        second, body = request_body(ADRTROIS, document=CN, patient="ipp/2")
        await w.publish(body)

        assert row["outcome"] == "failed"
        assert event["type"] == "fr.ins.identity.failed"
        validate_event(event)
        assert simulator.stats.total == 1
        await w.stop_worker()
        assert await w.ready_messages() == 1
        still = await db.fetchval(
            "SELECT count(*) FROM requests WHERE request_id = $1"
            " AND state = 'done'",
            second,
        )
        assert still == 0


async def test_body_that_is_not_json_is_dead_lettered_with_its_reason(
    settings: Settings, db: Any
) -> None:
    """Garbage goes to the dead-letter queue with ``x-ins-reason``."""
    async with running_worker(settings, db) as w:
        await w.publish(b"\x00garbage", message_id="m-1")

        [dead] = await w.take_dead_letters(1)

        assert dead.message_id == "m-1"
        assert dead.body == b"\x00garbage"
        assert (dead.headers or {})["x-ins-reason"] == "not_json"
        await w.stop_worker()
        assert await w.ready_messages() == 0


async def test_invalid_request_with_readable_id_is_rejected_and_published(
    settings: Settings, db: Any
) -> None:
    """Schema-invalid but with an id: dead letter plus ``rejected``."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(ADRTROIS, document=CN)
        broken = json.loads(body)
        broken["data"]["traits"]["birth_date"] = "01/01/1960"
        await w.publish(json.dumps(broken).encode())

        row = await w.outcome(request_id)
        [dead] = await w.take_dead_letters(1)
        [event] = await w.take_events(1)

        assert row["outcome"] == "rejected"
        assert row["reason"] == "schema_invalid"
        assert (dead.headers or {})["x-ins-reason"] == "schema_invalid"
        assert "birth_date" in (dead.headers or {})["x-ins-detail"]
        assert event["type"] == "fr.ins.identity.rejected"
        validate_event(event)
        assert w.simulator.stats.total == 0


async def test_redelivered_request_is_acked_without_a_second_call(
    settings: Settings, db: Any
) -> None:
    """The same request twice: one INSi call, one outcome, one event."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(ADRTROIS, document=CN)
        await w.publish(body)
        await w.outcome(request_id)
        await w.take_events(1)
        await w.publish(body)

        await w.stop_worker()

        assert w.simulator.stats.total == 1
        assert await w.ready_messages() == 0
        events = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE request_id = $1", request_id
        )
        assert events == 1


async def test_request_id_reused_for_another_body_is_dead_lettered(
    settings: Settings, db: Any
) -> None:
    """Two bodies under one id: the second is refused, not processed."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(ADRTROIS, document=CN)
        await w.publish(body)
        await w.outcome(request_id)
        _, other = request_body(HOUILLES, request_id=request_id)
        await w.publish(other)

        [dead] = await w.take_dead_letters(1)

        assert (dead.headers or {})["x-ins-reason"] == "request_id_reused"
        assert w.simulator.stats.total == 1


async def test_exhausted_delayed_retries_end_in_a_failed_outcome(
    settings: Settings, db: Any
) -> None:
    """INSi always failing: retry queues, then ``failed``, then nothing."""
    simulator = Simulator()
    simulator.fail_next(FaultMode.HTTP_503, 1000)
    quick = dataclasses.replace(settings, insi_attempts=1)
    async with running_worker(quick, db, simulator) as w:
        request_id, body = request_body(ADRTROIS, document=CN)
        await w.publish(body)

        row = await w.outcome(request_id, timeout_s=20)
        [event] = await w.take_events(1)

        assert row["outcome"] == "failed"
        assert row["reason"] == "retries_exhausted"
        assert event["type"] == "fr.ins.identity.failed"
        steps = await db.fetch(
            "SELECT step FROM request_log WHERE request_id = $1 ORDER BY id",
            request_id,
        )
        assert [s["step"] for s in steps] == [
            "delayed_retry",
            "delayed_retry",
            "outcome",
        ]
        assert simulator.stats.total == 3
