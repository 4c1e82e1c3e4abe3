"""A small asyncio circuit breaker: closed, open, half-open.

It counts infrastructure failures only (the caller decides what those
are: timeouts, connection errors, 5xx, ``siram_40``); a business result or
a refused request is a success as far as the breaker is concerned. When
open it refuses calls at once; after ``reset_s`` it lets exactly one probe
through; the probe's success closes it, its failure opens it again.
Once it has opened, only the probe moves it: the late verdicts of calls
let through before it opened are ignored, or they would flap it (and
the consumption it governs) open and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from enum import StrEnum

from worker.errors import CircuitOpen

logger = logging.getLogger(__name__)


class BreakerState(StrEnum):
    """The three states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Listener = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """Counts consecutive infrastructure failures of one dependency."""

    def __init__(
        self,
        failures: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = max(1, failures)
        self._reset_s = reset_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()

    @property
    def state(self) -> BreakerState:
        """The current state, moving to half-open once the wait is over."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self._reset_s
        ):
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def seconds_until_probe(self) -> float:
        """How long an open breaker still waits before its probe."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._reset_s - (self._clock() - self._opened_at))

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` on every transition."""
        self._listeners.append(listener)

    async def wait_change(self, timeout_s: float | None = None) -> None:
        """Wait for the next transition (or the timeout)."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def acquire(self) -> bool:
        """Permission for one call; True when it is the half-open probe.

        Raises :class:`CircuitOpen` when the call must not happen.
        """
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        raise CircuitOpen("INSi circuit breaker is open")

    def record_success(self, probe: bool = False) -> None:
        """The call reached INSi and got an answer of the contract."""
        if probe:
            self._probing = False
        elif self._state is not BreakerState.CLOSED:
            return
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def record_failure(self, probe: bool = False) -> None:
        """The call failed for an infrastructure reason."""
        if probe:
            self._probing = False
        elif self._state is not BreakerState.CLOSED:
            return
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED
            and self._failures >= self._threshold
        ):
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN)

    def release(self, probe: bool) -> None:
        """The call ended without a verdict (cancelled): free the probe."""
        if probe:
            self._probing = False

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if new is BreakerState.CLOSED:
            self._failures = 0
        logger.warning(
            "breaker_transition from=%s to=%s", old.value, new.value
        )
        for listener in self._listeners:
            listener(old, new)
        self._changed.set()
