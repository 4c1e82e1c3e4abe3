"""The time budget of one delivery, shared by every await it makes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Deadline:
    """A point on the monotonic clock past which work on a message stops.

    The budget is well below the broker's consumer timeout, so that a
    message is always acked, requeued or retried before the broker gives
    up on the consumer.
    """

    budget_s: float
    started: float = field(default_factory=time.monotonic)

    @property
    def at(self) -> float:
        """The deadline as a ``time.monotonic()`` value."""
        return self.started + self.budget_s

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    def elapsed(self) -> float:
        """Seconds since the delivery arrived."""
        return time.monotonic() - self.started

    def expired(self) -> bool:
        """Whether the budget is spent."""
        return self.remaining() <= 0.0
