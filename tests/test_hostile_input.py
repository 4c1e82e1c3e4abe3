"""Hostile input: XML bombs from "INSi", oversize and fuzzed requests.

The simulator serves hostile XML (a DTD with an external entity, an
entity bomb, a huge text node, deep nesting) so that the tests aim at
the real client: each is refused before expansion, with a bounded error
kind, quickly. Requests over the size limit are dead-lettered unread,
and fuzzed JSON published through a running worker always ends in an
outcome or a dead letter with a reason.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from worker_harness import (
    CN,
    RunningWorker,
    request_body,
    running_worker,
    traits,
)

from worker import metrics
from worker.errors import InsiProtocolError
from worker.insi.factory import make_client
from worker.insi.model import TraitsSearch
from worker.insi.xmlsafe import XmlRefused
from worker.settings import Settings
from worker.simulator.faults import FaultConfig, FaultMode
from worker.simulator.server import Simulator

ADRTROIS = traits("Adrtrois", ["Toussaint"], "M", "1960-01-01")
SEARCH = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")

#: mode, simulator options, the refusal reason (None: the size limit)
HOSTILE = {
    "external-entity": (FaultMode.XML_EXTERNAL_ENTITY, {}, "dtd_forbidden"),
    "entity-bomb": (FaultMode.XML_ENTITY_BOMB, {}, "dtd_forbidden"),
    # 12 MB: over the reply limit, refused while reading, never parsed
    "huge-text": (FaultMode.XML_HUGE_TEXT, {}, None),
    "long-text": (
        FaultMode.XML_HUGE_TEXT,
        {"huge_text_bytes": 200_000},
        "text_too_large",
    ),
    # 10,000 levels: libxml2 stops at its own limit, before building them
    "deep-nesting": (FaultMode.XML_DEEP_NESTING, {}, "not_xml"),
    "nesting": (
        FaultMode.XML_DEEP_NESTING,
        {"nesting_depth": 100},
        "too_deep",
    ),
}

#: what a refusal may say: never a piece of the hostile document
_PAYLOAD_TRACES = ("lol", "SIMULATOR", "AAAA", "<x>", "ENTITY", "_canary")


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """A plain-http simulator on 127.0.0.1."""
    sim = Simulator()
    await sim.start("127.0.0.1", 0)
    yield sim
    await sim.stop()


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_real_client_refuses_hostile_xml_quickly(
    simulator: Simulator, case: str
) -> None:
    """Each hostile reply: a protocol error with its reason, in < 5 s."""
    mode, options, reason = HOSTILE[case]
    simulator.set_faults(FaultConfig(next=(mode,), **options))
    settings = dataclasses.replace(Settings(), insi_url=simulator.url)
    client, _ = make_client(settings, datetime.now(UTC))

    started = time.monotonic()
    try:
        with pytest.raises(InsiProtocolError) as caught:
            async with asyncio.timeout(5):
                await client.search(SEARCH)
    finally:
        await client.close()
    took = time.monotonic() - started

    error = caught.value
    assert error.kind == "protocol"
    if reason is None:
        assert "larger than" in str(error)
    else:
        assert isinstance(error, XmlRefused) and error.reason == reason
    assert error.exchange is not None
    assert error.exchange.error_kind == "protocol"
    for trace in _PAYLOAD_TRACES:
        assert trace not in str(error)
    assert simulator.stats.canary_fetches == 0
    assert took < 5


@pytest.mark.servers
async def test_running_worker_fails_hostile_replies_once_and_goes_on(
    settings: Settings, db: Any
) -> None:
    """Hostile replies: ``failed``/protocol, one call each, no retry."""
    simulator = Simulator()
    modes = [
        FaultMode.XML_EXTERNAL_ENTITY,
        FaultMode.XML_ENTITY_BOMB,
        FaultMode.XML_HUGE_TEXT,
        FaultMode.XML_DEEP_NESTING,
    ]
    retries = metrics.REGISTRY.get_sample_value(
        "ins_worker_insi_retries_total"
    )
    async with running_worker(settings, db, simulator) as w:
        rows = []
        for n, mode in enumerate(modes):
            simulator.fail_next(mode)
            request_id, body = request_body(
                ADRTROIS, document=CN, patient=f"ipp/{n}"
            )
            await w.publish(body)
            rows.append(await w.outcome(request_id))
        after, body = request_body(ADRTROIS, document=CN, patient="ipp/ok")
        await w.publish(body)
        healthy = await w.outcome(after)

    assert [(r["outcome"], r["reason"]) for r in rows] == [
        ("failed", "protocol")
    ] * len(modes)
    kinds = await db.fetch(
        "SELECT error_kind FROM insi_calls WHERE request_id <> $1 ORDER BY id",
        after,
    )
    assert [k["error_kind"] for k in kinds] == ["protocol"] * len(modes)
    assert healthy["outcome"] == "qualified"
    assert simulator.stats.canary_fetches == 0
    assert simulator.stats.total == len(modes) + 1
    assert (
        metrics.REGISTRY.get_sample_value("ins_worker_insi_retries_total")
        == retries
    )


@pytest.mark.servers
async def test_body_over_the_size_limit_is_dead_lettered_unread(
    settings: Settings, db: Any
) -> None:
    """One byte over the limit: ``too_large``; at the limit: processed."""
    limit = 2048
    small = dataclasses.replace(settings, max_body_bytes=limit)
    async with running_worker(small, db) as w:
        request_id, body = request_body(ADRTROIS, document=CN)
        # JSON allows trailing blanks: the same request, padded.
        at_limit = body + b" " * (limit - len(body))
        over_id, over = request_body(ADRTROIS, patient="ipp/over")
        over += b" " * (limit + 1 - len(over))
        await w.publish(at_limit)
        await w.publish(over, message_id="m-over")

        row = await w.outcome(request_id)
        [dead] = await w.take_dead_letters(1)

    assert len(at_limit) == limit and len(over) == limit + 1
    assert row["outcome"] == "qualified"
    assert dead.message_id == "m-over"
    assert (dead.headers or {})["x-ins-reason"] == "too_large"
    assert dead.body == over
    unread = await db.fetchval(
        "SELECT count(*) FROM requests WHERE request_id = $1", over_id
    )
    assert unread == 0
    assert w.simulator.stats.total == 1


# ---- fuzzing through a running worker -------------------------------------

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)

#: every field of a request, as a path into its JSON
PATHS: list[tuple[str | int, ...]] = [
    ("specversion",),
    ("type",),
    ("source",),
    ("id",),
    ("subject",),
    ("correlationid",),
    ("time",),
    ("data",),
    ("data", "traits"),
    ("data", "traits", "birth_name"),
    ("data", "traits", "first_names"),
    ("data", "traits", "first_names", 0),
    ("data", "traits", "sex"),
    ("data", "traits", "birth_date"),
    ("data", "traits", "birth_place"),
    ("data", "traits", "birth_date_corrected"),
    ("data", "document"),
    ("data", "document", "type"),
    ("data", "document", "checked_at"),
    ("data", "ins"),
    ("data", "ins", "value"),
    ("data", "ins", "oid"),
    ("data", "attributes"),
]

#: values that pass the schema but test the identity rules behind it
plausible = st.one_of(
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    st.text(min_size=1, max_size=100),
    st.sampled_from(["M", "F", "I", "", "m"]),
    st.from_regex(r"[0-9A-Z]{5}", fullmatch=True),
    st.from_regex(r"[12][0-9]{12}[0-9]{2}", fullmatch=True),
    st.sampled_from(["1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.10", "1.2"]),
    st.lists(st.sampled_from(["douteuse", "fictive"]), max_size=2),
    st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=3),
)

Mutation = tuple[str, tuple[str | int, ...], Any]

mutations = st.tuples(
    st.sampled_from(["delete", "replace", "plausible", "add"]),
    st.sampled_from(PATHS),
    st.one_of(json_values, plausible),
)


def _base(request_id: uuid.UUID) -> dict[str, Any]:
    _, body = request_body(
        dict(ADRTROIS, birth_place="2B020"),
        request_id=str(request_id),
        document=CN,
        ins={"value": "160012B02077713", "oid": "1.2.250.1.213.1.4.8"},
        patient=f"ipp/{request_id.hex[:8]}",
    )
    document = json.loads(body)
    assert isinstance(document, dict)
    return document


def _mutate(document: dict[str, Any], mutation: Mutation) -> None:
    action, path, value = mutation
    parent: Any = document
    for step in path[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if not isinstance(parent, dict | list):
        return
    if isinstance(parent, list) and not (
        isinstance(last, int) and last < len(parent)
    ):
        return
    if isinstance(parent, dict) and isinstance(last, int):
        return
    if action == "delete":
        if isinstance(parent, dict):
            parent.pop(last, None)
        else:
            del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[f"x_{len(parent)}"] = value
    else:
        parent[last] = value


#: refusals that also send the body to the dead-letter queue
DEAD_LETTERED = frozenset(
    {
        "not_json",
        "schema_invalid",
        "unsupported_version",
        "unknown_type",
        "too_large",
        "request_id_reused",
    }
)


def _acked_as_done() -> float:
    name = "ins_worker_redeliveries_acked_total"
    return metrics.REGISTRY.get_sample_value(name) or 0.0


async def _settles(w: RunningWorker, body: bytes) -> str:
    """Publish ``body``; how it ended: an outcome, or ``dead:<reason>``.

    ``duplicate`` is a body whose request id already had its outcome:
    acked again, as a redelivery is (one outcome per request id).
    """
    message_id = f"fuzz-{uuid.uuid4()}"
    digest = hashlib.sha256(body).digest()
    duplicates = _acked_as_done()
    await w.publish(body, message_id=message_id)

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        dead = await w.dead.get(fail=False, timeout=5)
        if dead is not None:
            await dead.ack()
            assert dead.message_id == message_id, "a dead letter from before"
            reason = (dead.headers or {}).get("x-ins-reason")
            # The broker's own dead-lettering (delivery limit after a
            # crash loop) carries no reason: that is the failure sought.
            assert reason in metrics.DEAD_LETTER_REASONS, dead.headers
            return f"dead:{reason}"
        row = await w.db.fetchrow(
            "SELECT outcome, reason FROM requests"
            " WHERE body_sha256 = $1 AND state = 'done'",
            digest,
        )
        # A body refused unread but whose id could be read gets both a
        # rejected outcome and a dead letter: wait for the dead letter.
        if row is not None and row["reason"] not in DEAD_LETTERED:
            return str(row["outcome"])
        if _acked_as_done() > duplicates:
            return "duplicate"
        await asyncio.sleep(0.02)
    raise AssertionError(f"lost: {body[:200]!r}")


async def _still_consuming(w: RunningWorker) -> None:
    queue = await w.channel.declare_queue(
        w.settings.requests_queue, passive=True
    )
    result = queue.declaration_result
    assert result.consumer_count == 1
    assert result.message_count == 0


@pytest.fixture
async def fuzz_worker(
    settings: Settings, db: Any
) -> AsyncIterator[RunningWorker]:
    """One running worker shared by every example of a fuzz test."""
    quick = dataclasses.replace(settings, insi_attempts=1)
    async with running_worker(quick, db) as w:
        yield w
        await _still_consuming(w)


#: how a message that is not dead-lettered may end
SETTLED = {*metrics.OUTCOMES, "duplicate"}

FUZZ = hypothesis_settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
    ],
)


@pytest.mark.servers
@FUZZ
@given(body=st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                      st.binary(max_size=300)))  # fmt: skip
async def test_random_bodies_end_in_a_dead_letter_with_a_reason(
    fuzz_worker: RunningWorker, body: bytes
) -> None:
    """Any JSON value or bytes: settled with a reason, consumer unharmed."""
    ending = await _settles(fuzz_worker, body)

    assert ending.startswith("dead:") or ending in SETTLED


@pytest.mark.servers
@FUZZ
@given(changes=st.lists(mutations, min_size=1, max_size=3))
async def test_near_valid_requests_end_in_an_outcome_or_a_dead_letter(
    fuzz_worker: RunningWorker, changes: list[Mutation]
) -> None:
    """Mutated fields: an outcome or a dead letter, never lost or crashed."""
    # A fresh id each time: a replayed example must not meet its own
    # earlier outcome.
    document = _base(uuid.uuid4())
    for change in changes:
        _mutate(document, copy.deepcopy(change))
    body = json.dumps(document).encode()

    ending = await _settles(fuzz_worker, body)

    assert ending.startswith("dead:") or ending in SETTLED


@pytest.mark.servers
async def test_deeply_nested_json_is_dead_lettered_as_not_json(
    settings: Settings, db: Any
) -> None:
    """10 KB of nested arrays: refused as ``not_json``, not a crash loop."""
    async with running_worker(settings, db) as w:
        ending = await _settles(w, b"[" * 5000 + b"]" * 5000)

    assert ending == "dead:not_json"
