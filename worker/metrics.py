"""Prometheus metrics of the worker, all in one registry.

Labels only ever take values from small fixed sets (outcome types, result
codes, error kinds, breaker states, dead-letter reasons, retry tiers):
never an id, a name or anything personal. Every value known in advance
is set up at zero here, so that a series exists before its first
increment and ``increase()`` in an alert sees that increment.
"""

from __future__ import annotations

import math

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from worker import errors
from worker.breaker import BreakerState
from worker.domain.outcome import OutcomeType
from worker.events import EVENT_TYPES
from worker.insi.model import CodeCR, Operation

REGISTRY = CollectorRegistry(auto_describe=True)

#: INSi is slow and traced: buckets from 50 ms to a full 60 s timeout
INSI_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)

#: time the worker itself spends on a message, INSi excluded
OVERHEAD_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

BREAKER_STATES = tuple(state.value for state in BreakerState)

OUTCOMES = tuple(outcome.value for outcome in OutcomeType)

#: every ``MessageRejected.reason`` the worker raises (a test pins it)
DEAD_LETTER_REASONS = (
    "too_large",
    "not_json",
    "unknown_type",
    "unsupported_version",
    "schema_invalid",
    "request_id_reused",
)

OPERATIONS = tuple(operation.value for operation in Operation)


def _error_kinds() -> tuple[str, ...]:
    # The abstract branches are never raised as such: only their leaves.
    abstract = {errors.InsiError, errors.InsiTransient, errors.InsiPermanent}
    kinds: dict[str, None] = {}
    pending: list[type[errors.InsiError]] = [errors.InsiError]
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if cls not in abstract:
            kinds[cls.kind] = None
    return tuple(kinds)


#: the ``result`` of an INSi call: its CodeCR, or the error kind
INSI_RESULTS = tuple(code.value for code in CodeCR) + _error_kinds()

messages_consumed = Counter(
    "ins_worker_messages_consumed_total",
    "Deliveries taken from the requests queue",
    registry=REGISTRY,
)
outcomes = Counter(
    "ins_worker_outcomes_total",
    "Terminal outcomes stored, by outcome type",
    ["outcome"],
    registry=REGISTRY,
)
redeliveries_acked = Counter(
    "ins_worker_redeliveries_acked_total",
    "Redelivered requests whose outcome was already stored",
    registry=REGISTRY,
)
insi_calls = Counter(
    "ins_worker_insi_calls_total",
    "SOAP calls to INSi by operation and result (CodeCR or error kind)",
    ["operation", "result"],
    registry=REGISTRY,
)
insi_latency = Histogram(
    "ins_worker_insi_call_duration_seconds",
    "Duration of one SOAP call to INSi",
    ["operation"],
    buckets=INSI_BUCKETS,
    registry=REGISTRY,
)
retries = Counter(
    "ins_worker_insi_retries_total",
    "Immediate retries of an INSi call within a message's budget",
    registry=REGISTRY,
)
delayed_retries = Counter(
    "ins_worker_delayed_retries_total",
    "Messages sent to a retry queue, by retry tier",
    ["tier"],
    registry=REGISTRY,
)
breaker_state = Gauge(
    "ins_worker_breaker_state",
    "1 for the breaker's current state, 0 for the others",
    ["state"],
    registry=REGISTRY,
)
breaker_transitions = Counter(
    "ins_worker_breaker_transitions_total",
    "Breaker state changes, by state entered",
    ["to"],
    registry=REGISTRY,
)
outbox_backlog = Gauge(
    "ins_worker_outbox_backlog",
    "Events written but not yet confirmed by the broker",
    registry=REGISTRY,
)
outbox_oldest_age = Gauge(
    "ins_worker_outbox_oldest_age_seconds",
    "Age of the oldest unsent event",
    registry=REGISTRY,
)
events_published = Counter(
    "ins_worker_events_published_total",
    "Events confirmed by the broker, by event type",
    ["type"],
    registry=REGISTRY,
)
dead_letters = Counter(
    "ins_worker_dead_letters_total",
    "Deliveries sent to the dead-letter queue, by reason",
    ["reason"],
    registry=REGISTRY,
)
in_flight = Gauge(
    "ins_worker_messages_in_flight",
    "Messages being processed right now",
    registry=REGISTRY,
)
event_loop_lag = Gauge(
    "ins_worker_event_loop_lag_seconds",
    "Delay of the last event-loop heartbeat beyond its schedule",
    registry=REGISTRY,
)
certificate_expiry = Gauge(
    "ins_worker_client_certificate_expiry_seconds",
    "Seconds until the INSi client certificate expires (NaN: none)",
    registry=REGISTRY,
)
certificate_not_after = Gauge(
    "ins_worker_client_certificate_expiry_timestamp_seconds",
    "Unix time the INSi client certificate expires at (NaN: none)",
    registry=REGISTRY,
)
configuration_error = Gauge(
    "ins_worker_configuration_error",
    "1 while a configuration fault halts the worker, else 0",
    registry=REGISTRY,
)
consumer_attached = Gauge(
    "ins_worker_consumer_attached",
    "1 while the worker has a consumer on the requests queue",
    registry=REGISTRY,
)
message_overhead = Histogram(
    "ins_worker_message_overhead_seconds",
    "Time the worker spends on a message, INSi calls excluded",
    buckets=OVERHEAD_BUCKETS,
    registry=REGISTRY,
)
rate_limit_wait = Histogram(
    "ins_worker_rate_limit_wait_seconds",
    "Time an INSi call waited for the global rate limit",
    buckets=(0.0, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
    registry=REGISTRY,
)


def declare_retry_tiers(count: int) -> None:
    """Set up the ``tier`` series "1".."count" (one per retry queue)."""
    for tier in range(1, count + 1):
        delayed_retries.labels(tier=str(tier))


def _declare_known_values() -> None:
    for state in BREAKER_STATES:
        breaker_state.labels(state=state).set(1 if state == "closed" else 0)
        breaker_transitions.labels(to=state)
    for outcome in OUTCOMES:
        outcomes.labels(outcome=outcome)
    for reason in DEAD_LETTER_REASONS:
        dead_letters.labels(reason=reason)
    for kind in EVENT_TYPES:
        events_published.labels(type=kind)
    for operation in OPERATIONS:
        insi_latency.labels(operation=operation)
        for result in INSI_RESULTS:
            insi_calls.labels(operation=operation, result=result)
    # No certificate until one is loaded: NaN matches no alert threshold,
    # where 0 would read as "expired".
    certificate_expiry.set(math.nan)
    certificate_not_after.set(math.nan)


_declare_known_values()
