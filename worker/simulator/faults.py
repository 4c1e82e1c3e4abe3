"""Fault injection: latency, failures the real INSi shows, hostile XML.

A :class:`FaultConfig` is a value: the latency, the probability of each
:class:`FaultMode` and a queue of modes forced on the next calls. A
:class:`FaultInjector` applies one to a stream of calls with its own
seeded random generator, so that a seeded run repeats exactly.

Per call, the injector draws the delay first (``latency_ms`` plus a
uniform ``0..jitter_ms``), then the mode: the head of the queue when
there is one, otherwise one uniform draw against the cumulated rates
(whose sum is at most 1), in :class:`FaultMode` order.

JSON form (``GET``/``PUT /_admin/faults``; a ``PUT`` replaces the whole
configuration, absent fields taking their defaults)::

    {"latency_ms": 200, "jitter_ms": 50, "seed": 7,
     "rates": {"insi_102": 0.05, "http_503": 0.01},
     "next": ["hang", "reset"],
     "huge_text_bytes": 12582912, "nesting_depth": 10000}
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from worker.simulator.hostile import HUGE_TEXT_BYTES, NESTING_DEPTH


class FaultMode(StrEnum):
    """What an injected failure does to one call."""

    #: SOAP fault ``siram_40``/``insi_102``, HTTP 500
    BACKEND_ERROR = "insi_102"
    #: SOAP fault ``siram_40``/``desir_1020``, HTTP 500
    SERVICE_UNAVAILABLE = "desir_1020"
    #: HTTP 503 with an empty body
    HTTP_503 = "http_503"
    #: HTTP 502 with a gateway's HTML page
    HTTP_502_HTML = "http_502_html"
    #: read the request, never answer until the client leaves
    HANG = "hang"
    #: drop the connection with a TCP reset, no response
    RESET = "reset"
    #: close the connection cleanly, no response
    CLOSE = "close"
    #: reply with a DOCTYPE declaring an external entity
    XML_EXTERNAL_ENTITY = "xml_external_entity"
    #: reply with nested entities expanding to a billion copies
    XML_ENTITY_BOMB = "xml_entity_bomb"
    #: reply with one text node of ``huge_text_bytes``
    XML_HUGE_TEXT = "xml_huge_text"
    #: reply with ``nesting_depth`` nested elements
    XML_DEEP_NESTING = "xml_deep_nesting"


_FIELDS = frozenset(
    {
        "latency_ms",
        "jitter_ms",
        "seed",
        "rates",
        "next",
        "huge_text_bytes",
        "nesting_depth",
    }
)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Latency and failures to inject; the default injects nothing."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = None
    rates: Mapping[FaultMode, float] = field(default_factory=dict)
    next: tuple[FaultMode, ...] = ()
    huge_text_bytes: int = HUGE_TEXT_BYTES
    nesting_depth: int = NESTING_DEPTH

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must be >= 0")
        if any(not 0.0 <= rate <= 1.0 for rate in self.rates.values()):
            raise ValueError("each rate must be between 0 and 1")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("the rates must add up to at most 1")
        if self.huge_text_bytes <= 0 or self.nesting_depth <= 0:
            raise ValueError("huge_text_bytes and nesting_depth must be > 0")

    @classmethod
    def spread(
        cls, rate: float, modes: Iterable[FaultMode], **options: Any
    ) -> FaultConfig:
        """``rate`` shared equally among ``modes`` (the CLI's form)."""
        chosen = tuple(dict.fromkeys(modes))
        share = rate / len(chosen) if chosen else 0.0
        rates = {mode: share for mode in chosen} if rate else {}
        return cls(rates=rates, **options)

    def to_json(self) -> dict[str, Any]:
        """The JSON form of the module docstring."""
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "seed": self.seed,
            "rates": {mode.value: r for mode, r in self.rates.items()},
            "next": [mode.value for mode in self.next],
            "huge_text_bytes": self.huge_text_bytes,
            "nesting_depth": self.nesting_depth,
        }

    @classmethod
    def from_json(cls, document: Any) -> FaultConfig:
        """Read the JSON form; raise ``ValueError`` on anything off it."""
        if not isinstance(document, dict):
            raise ValueError("a JSON object is expected")
        unknown = sorted(set(document) - _FIELDS)
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(unknown)}")

        rates = document.get("rates", {})
        queued = document.get("next", [])
        if not isinstance(rates, dict) or not isinstance(queued, list):
            raise ValueError("rates must be an object and next a list")
        seed = document.get("seed")
        if seed is not None and not _is_int(seed):
            raise ValueError("seed must be an integer or null")

        return cls(
            latency_ms=_number(document, "latency_ms", 0.0),
            jitter_ms=_number(document, "jitter_ms", 0.0),
            seed=seed,
            rates={_mode(m): _rate(r) for m, r in rates.items()},
            next=tuple(_mode(m) for m in queued),
            huge_text_bytes=int(
                _number(document, "huge_text_bytes", HUGE_TEXT_BYTES)
            ),
            nesting_depth=int(
                _number(document, "nesting_depth", NESTING_DEPTH)
            ),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(document: Mapping[str, Any], name: str, default: float) -> float:
    value = document.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("rates must be numbers")
    return float(value)


def _mode(value: Any) -> FaultMode:
    try:
        return FaultMode(value)
    except ValueError:
        known = ", ".join(mode.value for mode in FaultMode)
        raise ValueError(f"unknown fault mode {value!r} ({known})") from None


class FaultInjector:
    """Applies a :class:`FaultConfig` call after call."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        """Start over with ``config``: new generator, new queue."""
        self._config = config
        self._random = random.Random(config.seed)
        self._queue: deque[FaultMode] = deque(config.next)

    @property
    def config(self) -> FaultConfig:
        """The configuration in force, with what is left of the queue."""
        return replace(self._config, next=tuple(self._queue))

    def fail_next(self, mode: FaultMode, count: int = 1) -> None:
        """Force ``mode`` on the next ``count`` calls, after those queued."""
        if count < 0:
            raise ValueError("count must be >= 0")
        self._queue.extend([mode] * count)

    def delay_s(self) -> float:
        """The latency of the next call, in seconds."""
        config = self._config
        jitter = self._random.uniform(0.0, config.jitter_ms)
        return (config.latency_ms + jitter) / 1000.0

    def draw(self) -> FaultMode | None:
        """The failure of the next call, or ``None`` for a normal answer."""
        if self._queue:
            return self._queue.popleft()

        rates = self._config.rates
        if not rates:
            return None
        point = self._random.random()
        threshold = 0.0
        for mode in FaultMode:
            threshold += rates.get(mode, 0.0)
            if point < threshold:
                return mode
        return None
