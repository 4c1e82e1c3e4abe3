"""Which INSi failures are retried: every genuine fault and HTTP shape.

The table goes through the real client and gateway against the
simulator on 127.0.0.1 (and a port nobody listens on), so that what is
pinned is the whole chain: HTTP or SOAP shape → typed error → retried or
not. The kit's genuine faults are read by the reply parser itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.breaker import BreakerState, CircuitBreaker
from worker.deadline import Deadline
from worker.errors import (
    CircuitOpen,
    InsiConfigurationFault,
    InsiError,
    InsiHttpError,
    InsiPermanent,
    InsiProtocolError,
    InsiRequestFault,
    InsiTimeout,
    InsiTransient,
    InsiTransientFault,
    InsiUnreachable,
)
from worker.gateway import InsiGateway
from worker.insi.factory import make_client
from worker.insi.model import Exchange, TraitsSearch
from worker.insi.reply import parse_reply
from worker.settings import Settings
from worker.simulator.faults import FaultMode
from worker.simulator.server import Simulator

SEARCH = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")
BAD_SEX = dataclasses.replace(SEARCH, sex="X")


@dataclasses.dataclass(frozen=True)
class Log:
    """The per-message log fields the gateway wants."""

    request_id: str = "00000000-0000-4000-8000-000000000000"


class NoLimit:
    """A rate limiter that always grants."""

    async def acquire(self, deadline: float) -> None:
        return None


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """The INSi simulator on a free local port, no latency."""
    sim = Simulator()
    await sim.start("127.0.0.1", 0)
    yield sim
    await sim.stop()


def _gateway(url: str, breaker: CircuitBreaker) -> InsiGateway:
    settings = dataclasses.replace(
        Settings(),
        insi_url=url,
        insi_timeout_s=0.5,
        insi_connect_timeout_s=0.5,
    )
    client, _ = make_client(settings, datetime.now(UTC))
    return InsiGateway(
        client,
        breaker,
        NoLimit(),
        max_attempts=2,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
    )


async def _search(
    gateway: InsiGateway, search: TraitsSearch = SEARCH
) -> BaseException | None:
    exchanges: list[Exchange] = []
    try:
        await gateway.search(search, Deadline(10.0), exchanges, Log())
    except InsiError as exc:
        return exc
    finally:
        await gateway._client.close()  # type: ignore[attr-defined]
    return None


#: (injected mode, error class, retried)
SIMULATED = [
    (FaultMode.BACKEND_ERROR, InsiTransientFault, True),
    (FaultMode.SERVICE_UNAVAILABLE, InsiTransientFault, True),
    (FaultMode.HTTP_503, InsiHttpError, True),
    (FaultMode.HTTP_502_HTML, InsiHttpError, True),
    (FaultMode.HANG, InsiTimeout, True),
    (FaultMode.RESET, InsiUnreachable, True),
    (FaultMode.CLOSE, InsiUnreachable, True),
    (FaultMode.XML_ENTITY_BOMB, InsiProtocolError, False),
    (FaultMode.XML_EXTERNAL_ENTITY, InsiProtocolError, False),
]


@pytest.mark.parametrize(("mode", "error", "retried"), SIMULATED)
async def test_each_failure_shape_is_retried_only_when_transient(
    simulator: Simulator,
    mode: FaultMode,
    error: type[InsiError],
    retried: bool,
) -> None:
    """Transient shapes get a second try; permanent ones get one call."""
    simulator.fail_next(mode, 2)
    breaker = CircuitBreaker(100, 30.0)

    raised = await _search(_gateway(simulator.url, breaker))

    assert isinstance(raised, error)
    assert isinstance(raised, InsiTransient) is retried
    assert simulator.stats.total == (2 if retried else 1)


async def test_refused_connection_is_retried_as_unreachable() -> None:
    """Nothing listening: InsiUnreachable, tried again."""
    sim = Simulator()
    url = await sim.start("127.0.0.1", 0)
    await sim.stop()
    breaker = CircuitBreaker(100, 30.0)

    raised = await _search(_gateway(url, breaker))

    assert isinstance(raised, InsiUnreachable)
    assert breaker._failures == 2


async def test_request_and_caller_faults_are_not_retried(
    simulator: Simulator,
) -> None:
    """An invalid sex and an unknown IDAM: one call each, permanent."""
    breaker = CircuitBreaker(100, 30.0)
    bad_request = await _search(_gateway(simulator.url, breaker), BAD_SEX)
    simulator.allowed_idam = frozenset({"99999999"})

    bad_caller = await _search(_gateway(simulator.url, breaker))

    assert isinstance(bad_request, InsiRequestFault)
    assert isinstance(bad_caller, InsiConfigurationFault)
    assert simulator.stats.total == 2


async def test_business_answers_and_refusals_never_open_the_breaker(
    simulator: Simulator,
) -> None:
    """Many 01s and request faults in a row leave the breaker closed."""
    breaker = CircuitBreaker(2, 30.0)
    unknown = dataclasses.replace(SEARCH, birth_name="HOUILLES")

    for _ in range(3):
        assert await _search(_gateway(simulator.url, breaker), unknown) is None
        await _search(_gateway(simulator.url, breaker), BAD_SEX)

    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    "name",
    ["fault-siram40-insi102.xml", "fault-siram100-desir550.xml"],
)
def test_genuine_kit_faults_are_classified_as_the_kit_says(
    insi_kit: Path, name: str
) -> None:
    """The kit's ``retryable`` flag is the parser's transient verdict."""
    expected = json.loads((insi_kit / "expected.json").read_text())[name]
    body = (insi_kit / "faults" / name).read_bytes()

    with pytest.raises(InsiError) as raised:
        parse_reply(body, 500)

    assert isinstance(raised.value, InsiTransient) is expected["retryable"]
    assert isinstance(raised.value, InsiPermanent) is not expected["retryable"]


@pytest.mark.parametrize(
    ("status", "body", "transient"),
    [
        (500, b"", True),
        (502, b"", True),
        (503, b"  ", True),
        (504, b"", True),
        (408, b"", True),
        (429, b"", True),
        (503, b"<html><body>Service Unavailable</body></html>", True),
        (404, b"", False),
        (400, b"", False),
        (200, b"not xml", False),
    ],
)
def test_http_error_shapes_without_a_fault(
    status: int, body: bytes, transient: bool
) -> None:
    """5xx, 408 and 429 without a SOAP body are transient, others not."""
    with pytest.raises(InsiError) as raised:
        parse_reply(body, status)

    assert isinstance(raised.value, InsiTransient) is transient
    if transient:
        assert isinstance(raised.value, InsiHttpError)


class Scripted:
    """A client that raises the scripted errors, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def search(self, search: TraitsSearch) -> Exchange:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        raise AssertionError("no answer scripted")


async def test_the_last_error_is_reraised_as_it_was() -> None:
    """After the last try the original exception object comes out."""
    last = InsiHttpError(503)
    client = Scripted(InsiHttpError(502), last)
    gateway = InsiGateway(
        client, CircuitBreaker(100, 30.0), NoLimit(), max_attempts=2,
        backoff_initial_s=0.01,
    )

    with pytest.raises(InsiHttpError) as raised:
        await gateway.search(SEARCH, Deadline(10.0), [], Log())

    assert raised.value is last
    assert client.calls == 2


async def test_cancellation_and_open_breaker_are_never_retried() -> None:
    """CancelledError and CircuitOpen go straight through, one call."""
    client = Scripted(asyncio.CancelledError())
    gateway = InsiGateway(
        client, CircuitBreaker(100, 30.0), NoLimit(), max_attempts=4,
        backoff_initial_s=0.01,
    )
    with pytest.raises(asyncio.CancelledError):
        await gateway.search(SEARCH, Deadline(10.0), [], Log())
    opened = CircuitBreaker(1, 30.0)
    opened.record_failure()

    with pytest.raises(CircuitOpen):
        await InsiGateway(Scripted(), opened, NoLimit()).search(
            SEARCH, Deadline(10.0), [], Log()
        )

    assert client.calls == 1
