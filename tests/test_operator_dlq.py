"""``ins-worker dlq list`` and ``dlq replay`` on the real broker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from worker_harness import (
    CN,
    delete_topology,
    request_body,
    running_worker,
    traits,
)

from worker import cli, dlq, operator_cli, topology
from worker.errors import BrokerUnavailable
from worker.settings import PREFIX, Settings

pytestmark = pytest.mark.servers

Channel = aio_pika.abc.AbstractChannel

ADRTROIS = traits("Adrtrois", ["Toussaint"], "M", "1960-01-01")


@contextlib.asynccontextmanager
async def broker(settings: Settings) -> AsyncIterator[Channel]:
    """A channel on the test vhost with the worker's topology declared."""
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    channel = await connection.channel()
    await topology.declare(channel, settings)
    try:
        yield channel
    finally:
        await delete_topology(channel, settings)
        await connection.close()


async def dead_letter(
    channel: Channel,
    settings: Settings,
    body: bytes,
    *,
    reason: str | None = "schema_invalid",
    detail: str | None = "$.data.traits.sex: maxLength",
    message_id: str | None = None,
    headers: dict[str, Any] | None = None,
) -> None:
    """Dead-letter ``body`` the way the worker's pipeline does."""
    all_headers: dict[str, Any] = dict(headers or {})
    if reason is not None:
        all_headers["x-ins-reason"] = reason
    if detail is not None:
        all_headers["x-ins-detail"] = detail
    exchange = await channel.get_exchange(settings.dead_letter_exchange)
    await exchange.publish(
        aio_pika.Message(
            body,
            message_id=message_id,
            headers=all_headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=settings.requests_routing_key,
    )


async def drain(channel: Channel, queue: str) -> list[Any]:
    """Every message of ``queue``, in order, removed (end of a test)."""
    found = await channel.declare_queue(queue, passive=True)
    taken = []
    while (message := await found.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    return taken


def cli_args(*argv: str) -> argparse.Namespace:
    """The operator commands' arguments, parsed as the CLI does."""
    parser = argparse.ArgumentParser(prog="ins-worker")
    operator_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def run_cli(settings: Settings, *argv: str) -> int:
    """Run one operator command in a thread (it runs its own loop)."""
    args = cli_args(*argv)
    status: int = await asyncio.to_thread(args.func, args, settings)
    return status


def body_of(request_id: str, name: str = "DUPONT") -> bytes:
    """A request body holding a recognisable (made-up) name."""
    _, body = request_body(
        {
            "birth_name": name,
            "first_names": ["JEANNE"],
            "sex": "F",
            "birth_date": "1990-05-17",
        },
        request_id=request_id,
    )
    return body


async def test_list_describes_dead_letters_and_leaves_the_queue_as_it_was(
    settings: Settings,
) -> None:
    """Reasons, details and sizes shown; same messages, same order after."""
    ids = [str(uuid.uuid4()) for _ in range(3)]
    async with broker(settings) as channel:
        for n, request_id in enumerate(ids):
            await dead_letter(
                channel,
                settings,
                body_of(request_id),
                reason=f"reason_{n}",
                message_id=f"m-{n}",
            )

        first = await dlq.list_dead_letters(settings, dlq.Selection())
        second = await dlq.list_dead_letters(settings, dlq.Selection())
        left = await drain(channel, settings.dead_letter_queue)

    assert first.ready == first.examined == 3
    assert [d.request_id for d in first.selected] == ids
    assert [d.reason for d in first.selected] == [
        "reason_0",
        "reason_1",
        "reason_2",
    ]
    assert first.selected[0].detail == "$.data.traits.sex: maxLength"
    assert first.selected[0].size == len(body_of(ids[0]))
    assert [d.message_id for d in second.selected] == ["m-0", "m-1", "m-2"]
    assert [m.message_id for m in left] == ["m-0", "m-1", "m-2"]


async def test_list_with_a_limit_still_keeps_the_queue_order(
    settings: Settings,
) -> None:
    """``--limit 1`` shows one, yet the others do not jump ahead of it."""
    async with broker(settings) as channel:
        for n in range(4):
            await dead_letter(channel, settings, b"{}", message_id=f"m-{n}")

        scan = await dlq.list_dead_letters(settings, dlq.Selection(limit=1))
        left = await drain(channel, settings.dead_letter_queue)

    assert [d.message_id for d in scan.selected] == ["m-0"]
    assert [m.message_id for m in left] == ["m-0", "m-1", "m-2", "m-3"]


async def test_list_filters_by_reason_and_by_request_id(
    settings: Settings,
) -> None:
    """``--reason`` and ``--request-id`` each narrow the selection."""
    wanted = str(uuid.uuid4())
    async with broker(settings) as channel:
        await dead_letter(channel, settings, b"\x00", reason="not_json")
        await dead_letter(channel, settings, body_of(wanted))
        await dead_letter(channel, settings, body_of(str(uuid.uuid4())))

        by_reason = await dlq.list_dead_letters(
            settings, dlq.Selection(reason="not_json")
        )
        by_id = await dlq.list_dead_letters(
            settings, dlq.Selection(request_id=wanted.upper())
        )

    assert [d.reason for d in by_reason.selected] == ["not_json"]
    assert [d.request_id for d in by_id.selected] == [wanted]
    assert by_id.examined == 3


async def test_delivery_limit_dead_letter_shows_the_broker_reason(
    settings: Settings,
) -> None:
    """A poison message dead-lettered by the broker: x-death read."""
    strict = dataclasses.replace(settings, delivery_limit=1)
    async with broker(strict) as channel:
        exchange = await channel.get_exchange(strict.requests_exchange)
        await exchange.publish(
            aio_pika.Message(b"{}", message_id="poison"),
            routing_key=strict.requests_routing_key,
        )
        queue = await channel.declare_queue(
            strict.requests_queue, passive=True
        )
        while (m := await queue.get(no_ack=False, fail=False)) is not None:
            await m.nack(requeue=True)
        await asyncio.sleep(0.3)

        listed = await dlq.list_dead_letters(
            strict, dlq.Selection(reason="delivery_limit")
        )

    [letter] = listed.selected
    assert letter.message_id == "poison"
    assert letter.reason == letter.death_reason == "delivery_limit"
    assert letter.death_queue == strict.requests_queue
    assert letter.death_count == 1


async def test_list_prints_no_body_unless_asked(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The body's personal data shows only with ``--show-body``."""
    async with broker(settings) as channel:
        await dead_letter(channel, settings, body_of(str(uuid.uuid4())))

        plain = await run_cli(settings, "dlq", "list")
        plain_out = capsys.readouterr().out
        shown = await run_cli(settings, "dlq", "list", "--show-body")
        shown_out = capsys.readouterr().out

    assert plain == shown == 0
    assert "schema_invalid" in plain_out
    assert "DUPONT" not in plain_out
    assert "1990-05-17" not in plain_out
    assert "DUPONT" in shown_out


async def test_list_json_is_machine_readable(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json`` prints one JSON document without bodies."""
    async with broker(settings) as channel:
        await dead_letter(channel, settings, b"x", message_id="m-1")

        status = await run_cli(settings, "dlq", "list", "--json")
        document = json.loads(capsys.readouterr().out)

    assert status == 0
    assert document["selected"][0]["message_id"] == "m-1"
    assert "body" not in document["selected"][0]


async def test_replay_republishes_with_fresh_headers_and_acks_after(
    settings: Settings,
) -> None:
    """Replayed: reason, detail, x-death and attempt gone; body intact."""
    replayed_id, kept_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with broker(settings) as channel:
        await dead_letter(
            channel,
            settings,
            body_of(replayed_id),
            reason="broker_error",
            message_id="again",
            headers={
                "x-ins-attempt": 2,
                "x-death": [{"count": 1, "reason": "rejected", "queue": "q"}],
                "x-first-death-reason": "rejected",
                "traceparent": "00-abc-def-01",
            },
        )
        await dead_letter(channel, settings, body_of(kept_id))

        scan = await dlq.replay_dead_letters(
            settings, dlq.Selection(reason="broker_error")
        )
        sent = await drain(channel, settings.requests_queue)
        left = await drain(channel, settings.dead_letter_queue)

    assert scan.error is None
    assert scan.replayed == 1
    [message] = sent
    headers = dict(message.headers or {})
    assert message.body == body_of(replayed_id)
    assert message.message_id == "again"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert headers["traceparent"] == "00-abc-def-01"
    assert headers["x-ins-replay"]
    for gone in (
        "x-ins-reason",
        "x-ins-detail",
        "x-ins-attempt",
        "x-death",
        "x-first-death-reason",
    ):
        assert gone not in headers
    assert [dlq.describe(1, m).request_id for m in left] == [kept_id]


async def test_replay_dry_run_moves_nothing(settings: Settings) -> None:
    """``--dry-run`` selects but neither publishes nor acks."""
    async with broker(settings) as channel:
        await dead_letter(channel, settings, b"{}", message_id="m-1")

        scan = await dlq.replay_dead_letters(
            settings, dlq.Selection(), dry_run=True
        )
        sent = await drain(channel, settings.requests_queue)
        left = await drain(channel, settings.dead_letter_queue)

    assert [d.message_id for d in scan.selected] == ["m-1"]
    assert scan.replayed == 0
    assert sent == []
    assert [m.message_id for m in left] == ["m-1"]


async def test_replay_limit_replays_no_more_than_asked(
    settings: Settings,
) -> None:
    """``--limit 2`` of three: two back to work, one still dead."""
    async with broker(settings) as channel:
        for n in range(3):
            await dead_letter(channel, settings, b"{}", message_id=f"m-{n}")

        scan = await dlq.replay_dead_letters(settings, dlq.Selection(limit=2))
        sent = await drain(channel, settings.requests_queue)
        left = await drain(channel, settings.dead_letter_queue)

    assert scan.replayed == 2
    assert [m.message_id for m in sent] == ["m-0", "m-1"]
    assert [m.message_id for m in left] == ["m-2"]


async def test_unroutable_replay_keeps_every_dead_letter(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """No queue bound to the requests exchange: nothing is lost, exit 1."""
    async with broker(settings) as channel:
        for n in range(2):
            await dead_letter(channel, settings, b"{}", message_id=f"m-{n}")
        orphan = f"{settings.requests_exchange}.unbound"
        await channel.declare_exchange(
            orphan, aio_pika.ExchangeType.TOPIC, auto_delete=False
        )
        nowhere = dataclasses.replace(settings, requests_exchange=orphan)

        status = await run_cli(nowhere, "dlq", "replay")
        err = capsys.readouterr().err
        left = await drain(channel, settings.dead_letter_queue)
        await channel.exchange_delete(orphan)

    assert status == 1
    assert "unroutable" in err
    assert [m.message_id for m in left] == ["m-0", "m-1"]


async def test_missing_dead_letter_queue_is_an_error(
    settings: Settings,
) -> None:
    """A queue that does not exist is reported, not created."""
    with pytest.raises(BrokerUnavailable, match="dead-letter queue"):
        await dlq.list_dead_letters(settings, dlq.Selection())


async def test_replayed_request_gets_its_outcome_from_the_worker(
    settings: Settings, db: Any
) -> None:
    """Dead-lettered while INSi was broken, replayed after: processed."""
    async with running_worker(settings, db) as w:
        request_id, body = request_body(ADRTROIS, document=CN)
        await dead_letter(
            w.channel,
            settings,
            body,
            reason="insi_outage",
            headers={"x-ins-attempt": 2},
        )

        scan = await dlq.replay_dead_letters(settings, dlq.Selection())
        row = await w.outcome(request_id)

    assert scan.replayed == 1
    assert row["outcome"] == "qualified"
    assert w.simulator.stats.total == 1


def test_dlq_commands_are_wired_into_the_main_cli(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``ins-worker dlq list`` runs from the console script's entry."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv(PREFIX + "AMQP_URL", settings.amqp_url)
    monkeypatch.setenv(PREFIX + "DEAD_LETTER_QUEUE", "t.absent.dlq")
    monkeypatch.setattr("worker.logs.configure", lambda *a, **k: None)

    status = cli.main(["dlq", "list"])

    assert status == 1
    assert "t.absent.dlq" in capsys.readouterr().err


async def test_empty_dead_letter_queue_lists_nothing_at_once(
    settings: Settings,
) -> None:
    """No dead letter: an empty answer, without waiting for deliveries."""
    async with broker(settings):
        loop = asyncio.get_running_loop()
        started = loop.time()

        scan = await dlq.list_dead_letters(settings, dlq.Selection())

        elapsed = loop.time() - started
    assert (scan.ready, scan.examined, scan.selected) == (0, 0, [])
    assert elapsed < dlq.IDLE_S
