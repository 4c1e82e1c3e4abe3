"""The per-message budget: calls it cannot hold are not started, or cut."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from worker.breaker import BreakerState, CircuitBreaker
from worker.deadline import Deadline
from worker.errors import InsiHttpError, InsiTimeout
from worker.gateway import MIN_CALL_S, InsiGateway
from worker.insi.model import Exchange, TraitsSearch

SEARCH = TraitsSearch("ADRTROIS", ("TOUSSAINT",), "M", "1960-01-01")


@dataclasses.dataclass(frozen=True)
class Log:
    """The per-message log fields the gateway wants."""

    request_id: str = "00000000-0000-4000-8000-000000000000"


class NoLimit:
    """A rate limiter that always grants."""

    async def acquire(self, deadline: float) -> None:
        return None


class FullLimit:
    """A rate limiter whose next slot is past any deadline."""

    async def acquire(self, deadline: float) -> None:
        raise TimeoutError("rate limit wait exceeds the deadline")


class Client:
    """Counts calls; each one fails or sleeps as told."""

    def __init__(self, *, sleep_s: float = 0.0, fail: bool = False):
        self.calls = 0
        self._sleep_s = sleep_s
        self._fail = fail

    async def search(self, search: TraitsSearch) -> Exchange:
        self.calls += 1
        await asyncio.sleep(self._sleep_s)
        if self._fail:
            raise InsiHttpError(503)
        raise AssertionError("this test expects no answer")


def spent(seconds_left: float) -> Deadline:
    """A deadline with only ``seconds_left`` of its budget left."""
    return Deadline(10.0, started=time.monotonic() - 10.0 + seconds_left)


async def test_a_call_the_budget_cannot_hold_is_not_started() -> None:
    """Less than the minimum call time left: no call, no breaker count."""
    client = Client()
    breaker = CircuitBreaker(1, 30.0)
    gateway = InsiGateway(client, breaker, NoLimit())

    with pytest.raises(InsiTimeout):
        await gateway.search(SEARCH, spent(MIN_CALL_S / 2), [], Log())

    assert client.calls == 0
    assert breaker.state is BreakerState.CLOSED


async def test_a_call_running_past_the_budget_is_cut() -> None:
    """A slow INSi is cut at the deadline, not at its own timeout."""
    client = Client(sleep_s=30.0)
    gateway = InsiGateway(client, CircuitBreaker(5, 30.0), NoLimit())
    started = time.monotonic()

    with pytest.raises(InsiTimeout):
        await gateway.search(SEARCH, spent(MIN_CALL_S + 0.3), [], Log())

    assert time.monotonic() - started < MIN_CALL_S + 1.0
    assert client.calls == 1


async def test_no_retry_is_started_when_its_wait_exceeds_the_budget() -> None:
    """The stop respects the budget: the next backoff would not fit."""
    client = Client(fail=True)
    gateway = InsiGateway(
        client,
        CircuitBreaker(100, 30.0),
        NoLimit(),
        max_attempts=10,
        backoff_initial_s=2.0,
    )

    with pytest.raises(InsiHttpError):
        await gateway.search(SEARCH, spent(MIN_CALL_S + 1.5), [], Log())

    assert client.calls == 1


async def test_waiting_for_the_rate_limit_is_not_an_insi_failure() -> None:
    """A rate-limit wait past the deadline times out; INSi not blamed."""
    client = Client()
    breaker = CircuitBreaker(1, 30.0)
    gateway = InsiGateway(client, breaker, FullLimit(), max_attempts=1)

    with pytest.raises(InsiTimeout):
        await gateway.search(SEARCH, Deadline(10.0), [], Log())

    assert client.calls == 0
    assert breaker.state is BreakerState.CLOSED


async def test_a_refused_call_frees_the_half_open_probe() -> None:
    """A probe stopped before calling leaves the probe to the next one."""
    clock = [0.0]
    breaker = CircuitBreaker(1, 1.0, clock=lambda: clock[0])
    breaker.record_failure()
    clock[0] = 1.0
    gateway = InsiGateway(Client(), breaker, FullLimit(), max_attempts=1)

    with pytest.raises(InsiTimeout):
        await gateway.search(SEARCH, Deadline(10.0), [], Log())

    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.acquire() is True
