"""The circuit breaker on its own: closed, open, half-open, and back."""

from __future__ import annotations

import pytest

from worker.breaker import BreakerState, CircuitBreaker
from worker.errors import CircuitOpen


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(failures: int = 3, reset_s: float = 10.0) -> tuple[
    CircuitBreaker, Clock
]:
    clock = Clock()
    return CircuitBreaker(failures, reset_s, clock=clock), clock


def test_breaker_opens_after_the_configured_consecutive_failures() -> None:
    """N-1 failures keep it closed; the Nth opens it."""
    b, _ = breaker(failures=3)

    for _ in range(2):
        b.record_failure(b.acquire())
    assert b.state is BreakerState.CLOSED
    b.record_failure(b.acquire())

    assert b.state is BreakerState.OPEN


def test_a_success_resets_the_failure_count() -> None:
    """Failures must be consecutive to open the breaker."""
    b, _ = breaker(failures=3)

    b.record_failure(b.acquire())
    b.record_failure(b.acquire())
    b.record_success(b.acquire())
    b.record_failure(b.acquire())
    b.record_failure(b.acquire())

    assert b.state is BreakerState.CLOSED


def test_open_breaker_refuses_calls_until_the_reset_time() -> None:
    """While open, acquire raises CircuitOpen without calling."""
    b, clock = breaker(failures=1, reset_s=10.0)
    b.record_failure(b.acquire())

    clock.now += 9.9
    with pytest.raises(CircuitOpen):
        b.acquire()

    assert b.seconds_until_probe() == pytest.approx(0.1)


def test_half_open_lets_exactly_one_probe_through() -> None:
    """After the reset time one caller gets the probe, the next is refused."""
    b, clock = breaker(failures=1, reset_s=10.0)
    b.record_failure(b.acquire())
    clock.now += 10.0

    assert b.state is BreakerState.HALF_OPEN
    assert b.acquire() is True
    with pytest.raises(CircuitOpen):
        b.acquire()


def test_probe_success_closes_the_breaker() -> None:
    """The probe's answer closes it; calls flow again."""
    b, clock = breaker(failures=1, reset_s=10.0)
    b.record_failure(b.acquire())
    clock.now += 10.0

    b.record_success(b.acquire())

    assert b.state is BreakerState.CLOSED
    assert b.acquire() is False


def test_probe_failure_opens_the_breaker_again_for_a_full_wait() -> None:
    """A failed probe reopens it, and the wait starts over."""
    b, clock = breaker(failures=5, reset_s=10.0)
    for _ in range(5):
        b.record_failure(b.acquire())
    clock.now += 10.0

    b.record_failure(b.acquire())

    assert b.state is BreakerState.OPEN
    assert b.seconds_until_probe() == pytest.approx(10.0)


def test_cancelled_probe_frees_the_probe_slot() -> None:
    """A probe that ends without a verdict lets the next caller probe."""
    b, clock = breaker(failures=1, reset_s=1.0)
    b.record_failure(b.acquire())
    clock.now += 1.0
    probe = b.acquire()

    b.release(probe)

    assert b.state is BreakerState.HALF_OPEN
    assert b.acquire() is True


def test_every_transition_is_announced() -> None:
    """Listeners see closed→open→half-open→closed, in that order."""
    b, clock = breaker(failures=1, reset_s=1.0)
    seen: list[tuple[str, str]] = []
    b.on_change(lambda old, new: seen.append((old.value, new.value)))

    b.record_failure(b.acquire())
    clock.now += 1.0
    b.record_success(b.acquire())

    assert seen == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_late_verdicts_of_earlier_calls_do_not_move_an_open_breaker() -> None:
    """Only the probe decides once open: no flapping on stale answers."""
    b, clock = breaker(failures=1, reset_s=10.0)
    early = [b.acquire(), b.acquire()]
    b.record_failure(early[0])

    b.record_success(early[1])
    assert b.state is BreakerState.OPEN
    clock.now += 10.0
    probe = b.acquire()
    b.record_failure(False)
    assert b.state is BreakerState.HALF_OPEN

    b.record_success(probe)
    assert b.state is BreakerState.CLOSED
