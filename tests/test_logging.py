"""Logs: one JSON object per line, configured once, never personal data."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from worker_harness import CN, request_body, running_worker, traits

from worker import logs
from worker.domain.traits import normalise_for_insi
from worker.errors import MessageRejected, StoreUnavailable
from worker.settings import Settings
from worker.simulator.dataset import default_dataset
from worker.simulator.faults import FaultMode
from worker.simulator.server import Simulator

log = logging.getLogger("worker.test_logging")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Whatever ``logs.configure`` does to the root logger is undone after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {
        name: logging.getLogger(name).level
        for name in ("worker", "aiormq", "aio_pika", "asyncio", "zeep")
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in stream.getvalue().splitlines() if line]
    return [json.loads(line) for line in lines]


def test_json_line_carries_level_time_logger_event_and_fields(
    root_logging: None,
) -> None:
    """One object per line: the standard keys plus the message's fields."""
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)

    log.warning(
        "delayed_retry request_id=%s attempt=%d kind=%s",
        "6f1c2e0a-3b7d-4f0e-9a55-2b8f5c1d9e44",
        2,
        "http_error",
    )

    [line] = _json_lines(stream)
    assert line["level"] == "warning"
    assert line["logger"] == "worker.test_logging"
    assert line["event"] == "delayed_retry"
    assert line["request_id"] == "6f1c2e0a-3b7d-4f0e-9a55-2b8f5c1d9e44"
    assert line["attempt"] == "2"
    assert line["kind"] == "http_error"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]
    )
    assert "exception" not in line


def test_fields_bound_to_a_message_show_on_its_lines_only(
    root_logging: None,
) -> None:
    """``bind`` adds request id, correlation id and attempt per task."""
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)

    async def handle(request_id: str) -> None:
        with logs.bind(request_id=request_id, correlation_id="c", attempt=1):
            await asyncio.sleep(0)
            log.info("insi_call result=%s", "00")
            await asyncio.sleep(0)

    async def both() -> None:
        await asyncio.gather(handle("r-1"), handle("r-2"))
        log.info("worker_idle")

    asyncio.run(both())

    lines = _json_lines(stream)
    calls = [line for line in lines if line["event"] == "insi_call"]
    assert sorted(line["request_id"] for line in calls) == ["r-1", "r-2"]
    assert all(line["correlation_id"] == "c" for line in calls)
    assert all(line["attempt"] == 1 for line in calls)
    [idle] = [line for line in lines if line["event"] == "worker_idle"]
    assert "request_id" not in idle


def test_message_fields_win_over_bound_ones(root_logging: None) -> None:
    """A field the line states itself is not overwritten by the context."""
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)

    with logs.bind(attempt=1):
        log.info("outcome attempt=%d", 3)

    [line] = _json_lines(stream)
    assert line["attempt"] == "3"


def test_exception_is_written_once_with_the_workers_message(
    root_logging: None,
) -> None:
    """A worker error: one ``exception`` field, traceback and message."""
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)

    try:
        raise StoreUnavailable("inbox not reachable (TimeoutError)")
    except StoreUnavailable:
        log.exception("message_failed")

    [line] = _json_lines(stream)
    text = line["exception"]
    assert text.count("Traceback (most recent call last):") == 1
    assert "worker.errors.StoreUnavailable: inbox not reachable" in text
    assert "test_exception_is_written_once" in text
    assert "exception" not in line.get("message", "")


def test_foreign_exception_messages_are_withheld(root_logging: None) -> None:
    """A bug's ``KeyError('Dupont')`` shows its type, never its value."""
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)

    # Values reach the code at run time: none is in the source lines the
    # traceback quotes.
    person = " ".join(["Dupont", "Jean", "1980-02-03"])
    try:
        try:
            {}[person]
        except KeyError as exc:
            raise ValueError(f"bad name {person}") from exc
    except ValueError:
        log.exception("message_crashed")

    [line] = _json_lines(stream)
    assert "Dupont" not in json.dumps(line)
    assert "1980-02-03" not in json.dumps(line)
    assert "KeyError: message withheld" in line["exception"]
    assert "ValueError: message withheld" in line["exception"]
    assert "which then raised" in line["exception"]


def test_database_errors_keep_their_sqlstate_only() -> None:
    """asyncpg errors: the SQLSTATE says what happened, no row values."""
    error = asyncpg.exceptions.InvalidDatetimeFormatError(
        'invalid input syntax for type date: "1980-02-31"'
    )

    text = logs.describe_exception(error)

    assert "sqlstate 22007" in text
    assert "1980-02-31" not in text


def test_worker_error_messages_are_shown(root_logging: None) -> None:
    """Messages of the worker's errors are written PII-free: kept."""
    error = MessageRejected("schema_invalid", "$.data.traits.sex: maxLength")

    text = logs.describe_exception(error)

    assert "schema_invalid: $.data.traits.sex: maxLength" in text


def test_configuring_twice_keeps_one_handler(root_logging: None) -> None:
    """``configure`` replaces its handler: a line is written once."""
    first, second = io.StringIO(), io.StringIO()

    logs.configure("json", "INFO", stream=first)
    logs.configure("json", "INFO", stream=second)
    log.info("worker_started")

    assert len(logging.getLogger().handlers) == 1
    assert first.getvalue() == ""
    assert len(_json_lines(second)) == 1


def test_console_format_is_one_readable_line(root_logging: None) -> None:
    """The terminal format: time, level, logger, message, bound fields."""
    stream = io.StringIO()
    logs.configure("console", "INFO", stream=stream)

    with logs.bind(request_id="r-9"):
        log.info("outcome outcome=%s", "qualified")

    [line] = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d INFO    worker\.test_logging: "
        r"outcome outcome=qualified \[request_id=r-9\]",
        line,
    )


def test_library_free_text_becomes_a_log_event(root_logging: None) -> None:
    """A line not in ``event key=value`` form is kept whole."""
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)

    logging.getLogger("some.library").info("Connection lost, retrying")

    [line] = _json_lines(stream)
    assert line["event"] == "log"
    assert line["message"] == "Connection lost, retrying"


def test_chatty_libraries_are_kept_at_warning(root_logging: None) -> None:
    """Broker client and zeep debug lines (SOAP bodies) stay out."""
    logs.configure("json", "DEBUG", stream=io.StringIO())

    for name in ("aiormq", "aio_pika", "zeep"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING


# ---- no personal data, through the real flows ------------------------------

ADRTROIS = traits("Adrtrois", ["Toussaint"], "M", "1960-01-01")
HOUILLES = traits("Houilles", ["Pierre"], "M", "1993-01-27")
DE_VINCI = traits("De Vinci", ["Leonardo"], "M", "2014-02-01")
NOBODY = traits("Quenardel-Éyraud", ["Léonie", "Aude"], "F", "1987-11-23")


def _date_forms(iso: str) -> set[str]:
    year, month, day = iso.split("-")
    return {
        iso,
        f"{year}{month}{day}",
        f"{day}/{month}/{year}",
        f"{day}{month}{year}",
    }


def _name_forms(name: str) -> set[str]:
    forms = {name, name.upper(), normalise_for_insi(name, "birth_name")}
    return {f for f in forms if len(f) >= 4}


def personal_data() -> set[str]:
    """Every name, birth date and INS of the test data, in all its forms."""
    forms: set[str] = set()
    for person in default_dataset():
        forms |= _name_forms(person.birth_name)
        for first in person.first_names:
            forms |= _name_forms(first)
        forms |= _date_forms(person.birth_date)
        for ins in (person.active, *person.history):
            forms |= {ins.nir13, ins.nir13 + ins.key}
    for desk in (ADRTROIS, HOUILLES, DE_VINCI, NOBODY):
        forms |= _name_forms(desk["birth_name"])
        for first in desk["first_names"]:
            forms |= _name_forms(first)
        forms |= _date_forms(desk["birth_date"])
    return forms


def _leaks(text: str, forms: set[str]) -> list[str]:
    lowered = text.lower()
    found = [form for form in forms if form.lower() in lowered]
    # JSON escapes may hide a form in the raw text: read the values too.
    for line in text.splitlines():
        with_values = json.dumps(json.loads(line), ensure_ascii=False)
        found += [f for f in forms if f.lower() in with_values.lower()]
    return sorted(set(found))


async def _run_flows(settings: Settings, db: Any) -> None:
    simulator = Simulator()
    async with running_worker(settings, db, simulator) as w:
        ids = []
        for desk, extra in (
            (ADRTROIS, {"document": CN}),
            (HOUILLES, {}),
            (DE_VINCI, {"document": CN}),
            (dict(DE_VINCI, birth_place="63220"), {"document": CN}),
            (NOBODY, {"attributes": ["douteuse"]}),
            (ADRTROIS, {"ins": {"value": "160012B02077713",
                                "oid": "1.2.250.1.213.1.4.8"}}),
        ):  # fmt: skip
            request_id, body = request_body(
                desk, patient=f"ipp/{len(ids)}", **extra
            )
            await w.publish(body)
            ids.append(request_id)
        for request_id in ids:
            await w.outcome(request_id)

        # a transient fault then success, then a hostile reply
        simulator.fail_next(FaultMode.BACKEND_ERROR)
        request_id, body = request_body(HOUILLES, patient="ipp/retry")
        await w.publish(body)
        await w.outcome(request_id)
        simulator.fail_next(FaultMode.XML_ENTITY_BOMB)
        request_id, body = request_body(ADRTROIS, patient="ipp/bomb")
        await w.publish(body)
        await w.outcome(request_id)

        # INSi down for good: delayed retries, then failed
        simulator.fail_next(FaultMode.HTTP_503, 10)
        request_id, body = request_body(NOBODY, patient="ipp/down")
        await w.publish(body)
        await w.outcome(request_id, timeout_s=20)

        # dead letters: schema-invalid, not JSON, id reused, too large
        request_id, body = request_body(ADRTROIS, patient="ipp/bad")
        broken = json.loads(body)
        broken["data"]["traits"]["birth_date"] = "01/01/1960"
        await w.publish(json.dumps(broken).encode())
        await w.publish(b"ADRTROIS Toussaint 01/01/1960 160012B02077713")
        _, other = request_body(HOUILLES, request_id=ids[0])
        await w.publish(other)
        _, big = request_body(NOBODY, patient="ipp/big")
        await w.publish(big + b" " * settings.max_body_bytes)
        await w.take_dead_letters(4)

    # INSi refuses the installation: failed, then consumption halted
    refusing = Simulator(allowed_idam=("99999999",))
    async with running_worker(settings, db, refusing) as w:
        request_id, body = request_body(NOBODY, patient="ipp/idam")
        await w.publish(body)
        await w.outcome(request_id)


@pytest.mark.servers
async def test_end_to_end_flows_log_no_personal_data(
    settings: Settings, db: Any, root_logging: None
) -> None:
    """Every outcome type, faults and dead letters, at DEBUG: no PII."""
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)
    logging.getLogger("worker").setLevel(logging.DEBUG)
    quick = dataclasses.replace(settings, insi_attempts=1)

    await _run_flows(quick, db)

    text = stream.getvalue()
    events = {line["event"] for line in _json_lines(stream)}
    assert {"insi_call", "outcome", "dead_lettered", "delayed_retry"} <= events
    assert "insi_configuration_fault" in events
    assert _leaks(text, personal_data()) == []


def test_leak_check_sees_a_leak(root_logging: None) -> None:
    """The check itself finds a name, a date and an INS in any form."""
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)

    log.info("oops name=%s", "Adrtrois")
    log.info("oops born=%s", "01/01/1960")
    log.info("oops ins=%s", "160012B02077713")
    log.info("oops name=%s", "Quenardel-Éyraud")
    log.info("oops name=%s", "QUENARDEL-EYRAUD")

    found = _leaks(stream.getvalue(), personal_data())
    assert {"Adrtrois", "01/01/1960", "160012B02077713"} <= set(found)
    assert {"Quenardel-Éyraud", "QUENARDEL-EYRAUD"} <= set(found)
