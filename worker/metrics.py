"""Prometheus metrics of the worker, all in one registry.

Labels only ever take values from small fixed sets (outcome types, result
codes, error kinds, breaker states, dead-letter reasons): never an id, a
name or anything personal.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

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

BREAKER_STATES = ("closed", "open", "half_open")

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
    "Seconds until the INSi client certificate expires",
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

for _state in BREAKER_STATES:
    breaker_state.labels(state=_state).set(1 if _state == "closed" else 0)
