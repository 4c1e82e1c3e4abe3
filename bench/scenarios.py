"""One measurement each: a saturating burst, a half load, a rate limit.

A measurement declares fresh queues, starts the processes under test
(the bare baseline, or one or more ``ins-worker run``), publishes, waits
for every request's event, reads CPU and memory from /proc, stops the
processes and removes its queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat, stats
from bench.bed import Bed, Names
from bench.load import EventCollector, publish_burst, publish_paced
from bench.services import BaselineService, Service, WorkerService
from bench.workload import make_requests

logger = logging.getLogger(__name__)

OVERHEAD = "ins_worker_message_overhead_seconds"

#: the slowest pace a run is allowed before it is called incomplete
FLOOR_PER_S = 5.0


@dataclass(frozen=True, slots=True)
class Setup:
    """What is measured: which pipeline, how wide, how slow INSi is."""

    kind: str  # "baseline" or "worker"
    limit: int  # in-flight limit: prefetch (baseline), concurrency
    latency_ms: float
    processes: int = 1
    rate_limit_per_s: float = 0.0


@dataclass(slots=True)
class HalfLoad:
    """Latency figures at half of the measured throughput."""

    rate_per_s: float
    messages: int
    complete: bool
    achieved_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    overhead_p50_ms: float  # end to end minus INSi, from timestamps
    overhead_p99_ms: float
    metric_p50_ms: float  # the worker's own histogram
    metric_p99_ms: float


@dataclass(slots=True)
class Run:
    """The figures of one saturating burst."""

    setup: Setup
    messages: int
    complete: bool
    seconds: float
    throughput: float  # first request published to last event received
    steady_throughput: float  # between 10 % and 90 % of the events
    max_gap_ms: float  # longest wait between two events: a stall
    stored: int
    duplicates: int
    ready_s: list[float]
    rss_mb: float
    rss_peak_mb: float
    cpu_per_1000: dict[str, float]
    machine_busy: float  # share of all cores
    others_cores: float  # cores used by processes not measured here
    exit_codes: list[int]
    half: HalfLoad | None = None
    background_cores: float = math.nan  # others' load just before


@dataclass(slots=True)
class RateRun:
    """The figures of a run against the global rate limit."""

    limit_per_s: float
    processes: int
    offered_per_s: float
    messages: int
    complete: bool
    measured_per_s: float
    window_min_per_s: float
    window_max_per_s: float
    max_queue: int
    qualified: int
    insi_calls: int
    retries: int
    dead_letters: int
    exit_codes: list[int]
    database_cpu_per_s: float
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    background_cores: float = math.nan


def _services(bed: Bed, setup: Setup, names: Names) -> list[Service]:
    url = bed.simulator.lps_url
    if setup.kind == "baseline":
        arguments = [
            "--amqp-url", bed.amqp_url,
            "--database-url", bed.database_url,
            "--queue", names.settings.requests_queue,
            "--events-exchange", names.settings.events_exchange,
            "--insi-url", url,
            "--prefetch", str(setup.limit),
        ]  # fmt: skip
        return [BaselineService(bed.out_dir, arguments)]
    env = {
        **names.worker_env(bed.database_url, url),
        "INS_WORKER_CONCURRENCY": str(setup.limit),
        "INS_WORKER_PREFETCH": str(max(64, 2 * setup.limit)),
        "INS_WORKER_INSI_MAX_CONNECTIONS": str(max(32, setup.limit)),
        "INS_WORKER_RATE_LIMIT_PER_S": f"{setup.rate_limit_per_s:g}",
        **bed.worker_env,
    }
    return [
        WorkerService(f"worker-{names.tag}-{i}", bed.out_dir,
                      bed.worker_command, env)
        for i in range(setup.processes)
    ]  # fmt: skip


async def _start(services: Sequence[Service]) -> None:
    # One after another: each start is timed on a machine that is not
    # busy starting the others.
    for service in services:
        await service.start()


async def _stop(services: Sequence[Service]) -> list[int]:
    return list(await asyncio.gather(*(s.stop() for s in services)))


async def _stored(bed: Bed, kind: str) -> int:
    if kind == "baseline":
        query = "SELECT count(*) FROM bench_baseline"
    else:
        query = "SELECT count(*) FROM requests WHERE outcome = 'qualified'"
    return int(await bed.db.fetchval(query))


async def saturate(
    bed: Bed,
    setup: Setup,
    messages: int,
    half_load_s: float = 0.0,
    profile: Path | None = None,
    warmup: int = 0,
) -> Run:
    """Publish ``messages`` at once; throughput until the last event.

    ``warmup`` requests per process go through first, unmeasured: pools
    fill, caches and lazy imports settle. With ``profile``, py-spy
    samples the (first) process under test from then until it exits and
    writes its raw stacks there.
    """
    names = Names.fresh(bed.amqp_url)
    await bed.fresh_tables()
    await bed.simulator.configure(setup.latency_ms)
    channel = await bed.declare(names)
    events_channel = await bed.collecting.channel()
    collector = EventCollector()
    await collector.attach(events_channel, names.settings.events_exchange)
    exchange = await channel.get_exchange(names.settings.requests_exchange)
    key = names.settings.requests_routing_key
    services = _services(bed, setup, names)
    spy: asyncio.subprocess.Process | None = None
    try:
        await _start(services)
        if warmup > 0:
            await _warm(
                collector,
                exchange,
                key,
                names,
                warmup * len(services),
                bed.alive,
            )
        if profile is not None:
            spy = await _spy(services[0].pid, profile)
        subjects = {"subject": [s.pid for s in services]}
        requests = make_requests(messages, names.tag)
        collector.expect(messages)

        before = await bed.reading(subjects)
        sent = await publish_burst(exchange, key, requests)
        complete = await collector.wait(_allowance(messages), bed.alive)
        after = await bed.reading(subjects)

        memory = [procstat.memory_bytes(s.pid) for s in services]
        first = min(sent.values())
        last = max(collector.received.values(), default=first)
        seconds = last - first
        got = len(collector.received)
        used = procstat.used(before, after)
        run = Run(
            setup=setup,
            messages=messages,
            complete=complete,
            seconds=seconds,
            throughput=got / seconds if seconds > 0 else math.nan,
            steady_throughput=_steady(collector.received.values()),
            max_gap_ms=_max_gap(first, collector.received.values()) * 1000,
            stored=await _stored(bed, setup.kind),
            duplicates=collector.duplicates,
            ready_s=[getattr(s, "ready_s", math.nan) for s in services],
            rss_mb=max(m[0] for m in memory) / 2**20,
            rss_peak_mb=max(m[1] for m in memory) / 2**20,
            cpu_per_1000={
                k: v * 1000.0 / max(1, got) for k, v in used.items()
            },
            machine_busy=used["machine"] / (seconds * _cores())
            if seconds > 0
            else math.nan,
            others_cores=_others(used) / seconds if seconds > 0 else math.nan,
            exit_codes=[],
        )
        if half_load_s > 0 and complete:
            run.half = await _half_load(
                bed, setup, services, collector, exchange, key, names,
                run.throughput / 2.0, half_load_s,
            )  # fmt: skip
    finally:
        exit_codes = await _stop(services)
        if spy is not None:
            await asyncio.wait_for(spy.wait(), 60.0)
        with contextlib.suppress(Exception):
            await events_channel.close()
        with contextlib.suppress(Exception):
            await channel.close()
        await bed.remove(names)
    run.exit_codes = exit_codes
    return run


async def _warm(
    collector: EventCollector,
    exchange: Any,
    key: str,
    names: Names,
    count: int,
    alive: Callable[[], bool],
) -> None:
    collector.expect(count)
    await publish_burst(exchange, key, make_requests(count, f"{names.tag}-w"))
    if not await collector.wait(_allowance(count), alive):
        raise RuntimeError("the warm-up requests did not all come back")


def spy_command() -> str:
    """py-spy beside this interpreter, else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


async def _spy(pid: int, path: Path) -> asyncio.subprocess.Process:
    # 100 samples a second, blocking (consistent stacks); py-spy stops
    # and writes when the process exits.
    command = [
        spy_command(), "record", "--pid", str(pid), "--rate", "100",
        "--format", "raw", "--output", str(path),
    ]  # fmt: skip
    with (path.parent / "py-spy.log").open("ab") as log:
        spy = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=log
        )
    await asyncio.sleep(1.0)  # attached before the burst starts
    return spy


def _steady(received: Iterable[float]) -> float:
    times = sorted(received)
    if len(times) < 10:
        return math.nan
    low, high = len(times) // 10, (len(times) * 9) // 10
    span = times[high] - times[low]
    return (high - low) / span if span > 0 else math.nan


def _others(used: dict[str, float]) -> float:
    known = ("subject", "broker", "database_all", "simulator", "harness")
    return max(0.0, used["machine"] - sum(used[k] for k in known))


def _max_gap(start: float, received: Iterable[float]) -> float:
    times = [start, *sorted(received)]
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def _allowance(messages: int, rate: float = FLOOR_PER_S) -> float:
    return 30.0 + messages / rate


def _cores() -> int:
    return os.cpu_count() or 1


async def _half_load(
    bed: Bed,
    setup: Setup,
    services: Sequence[Service],
    collector: EventCollector,
    exchange: Any,
    key: str,
    names: Names,
    rate: float,
    duration_s: float,
) -> HalfLoad:
    count = max(10, int(rate * duration_s))
    requests = make_requests(count, f"{names.tag}-half")
    workers = [s for s in services if isinstance(s, WorkerService)]
    scraped = [await w.metrics() for w in workers]
    collector.expect(count)

    sent = await publish_paced(exchange, key, requests, rate)
    complete = await collector.wait(_allowance(count), bed.alive)

    after = [await w.metrics() for w in workers]
    ids = [r.request_id for r in requests]
    insi_ms = await _insi_ms(bed, setup.kind, ids)
    latency = [
        (collector.received[i] - sent[i]) * 1000.0
        for i in ids
        if i in collector.received
    ]
    overhead = [
        (collector.received[i] - sent[i]) * 1000.0 - insi_ms[i]
        for i in ids
        if i in collector.received and i in insi_ms
    ]
    buckets: stats.Buckets = []
    for old, new in zip(scraped, after, strict=True):
        buckets = stats.add(
            buckets,
            stats.difference(
                stats.histogram(new, OVERHEAD),
                stats.histogram(old, OVERHEAD),
            ),
        )
    span = max(collector.received.values(), default=0.0) - min(sent.values())
    return HalfLoad(
        rate_per_s=rate,
        messages=count,
        complete=complete,
        achieved_per_s=len(latency) / span if span > 0 else math.nan,
        latency_p50_ms=stats.percentile(latency, 0.5),
        latency_p99_ms=stats.percentile(latency, 0.99),
        overhead_p50_ms=stats.percentile(overhead, 0.5),
        overhead_p99_ms=stats.percentile(overhead, 0.99),
        metric_p50_ms=stats.histogram_quantile(buckets, 0.5) * 1000.0,
        metric_p99_ms=stats.histogram_quantile(buckets, 0.99) * 1000.0,
    )


async def _insi_ms(
    bed: Bed, kind: str, request_ids: Sequence[str]
) -> dict[str, float]:
    if kind == "baseline":
        query = (
            "SELECT request_id::text AS id, http_ms AS ms"
            " FROM bench_baseline WHERE request_id = ANY($1::uuid[])"
        )
    else:
        query = (
            "SELECT request_id::text AS id, sum(duration_ms) AS ms"
            " FROM insi_calls WHERE request_id = ANY($1::uuid[])"
            " GROUP BY request_id"
        )
    rows = await bed.db.fetch(query, list(request_ids))
    return {r["id"]: float(r["ms"]) for r in rows}


async def rate_limited(
    bed: Bed,
    *,
    limit_per_s: float,
    processes: int,
    overload: float,
    seconds: float,
) -> RateRun:
    """Offer ``overload`` times the limit; measure calls/s at INSi."""
    setup = Setup("worker", 32, 0.0, processes, limit_per_s)
    names = Names.fresh(bed.amqp_url)
    await bed.fresh_tables()
    await bed.simulator.configure(0.0)
    channel = await bed.declare(names)
    events_channel = await bed.collecting.channel()
    collector = EventCollector()
    await collector.attach(events_channel, names.settings.events_exchange)
    exchange = await channel.get_exchange(names.settings.requests_exchange)
    services = _services(bed, setup, names)
    offered = overload * limit_per_s
    count = max(10, round(offered * seconds))
    samples: list[tuple[float, int, int]] = []
    try:
        await _start(services)
        collector.expect(count)
        sampler = asyncio.create_task(
            _sample(bed, channel, names.settings.requests_queue, samples)
        )
        before = await bed.reading({})
        started = time.perf_counter()
        await publish_paced(
            exchange,
            names.settings.requests_routing_key,
            make_requests(count, names.tag),
            offered,
        )
        complete = await collector.wait(
            _allowance(count, limit_per_s * 0.5), bed.alive
        )
        elapsed = time.perf_counter() - started
        after = await bed.reading({})
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        scraped = [
            await s.metrics() for s in services if isinstance(s, WorkerService)
        ]
        dlq = await channel.declare_queue(
            names.settings.dead_letter_queue, passive=True
        )
        measured, low, high = _call_rate(samples, count)
        run = RateRun(
            limit_per_s=limit_per_s,
            processes=processes,
            offered_per_s=offered,
            messages=count,
            complete=complete,
            measured_per_s=measured,
            window_min_per_s=low,
            window_max_per_s=high,
            max_queue=max((s[2] for s in samples), default=0),
            qualified=await _stored(bed, "worker"),
            insi_calls=int(
                await bed.db.fetchval("SELECT count(*) FROM insi_calls")
            ),
            retries=int(
                sum(
                    stats.counter(t, "ins_worker_insi_retries_total")
                    + stats.counter(t, "ins_worker_delayed_retries_total")
                    for t in scraped
                )
            ),
            dead_letters=int(dlq.declaration_result.message_count or 0),
            exit_codes=[],
            database_cpu_per_s=procstat.used(before, after)["database"]
            / elapsed,
            samples=samples,
        )
    finally:
        exit_codes = await _stop(services)
        with contextlib.suppress(Exception):
            await events_channel.close()
        with contextlib.suppress(Exception):
            await channel.close()
        await bed.remove(names)
    run.exit_codes = exit_codes
    return run


async def _sample(
    bed: Bed,
    channel: Any,
    queue: str,
    into: list[tuple[float, int, int]],
) -> None:
    # Calls seen by the simulator and requests waiting in the queue,
    # four times a second.
    started = time.perf_counter()
    while True:
        calls = await bed.simulator.calls()
        declared = await channel.declare_queue(queue, passive=True)
        ready = int(declared.declaration_result.message_count or 0)
        into.append((time.perf_counter() - started, calls, ready))
        await asyncio.sleep(0.25)


def _call_rate(
    samples: Sequence[tuple[float, int, int]], total: int
) -> tuple[float, float, float]:
    """(rate between 10 % and 90 % of the calls, 1 s window min, max)."""
    low_mark, high_mark = 0.1 * total, 0.9 * total
    inside = [s for s in samples if low_mark <= s[1] <= high_mark]
    if len(inside) < 2:
        return math.nan, math.nan, math.nan
    (t0, c0, _), (t1, c1, _) = inside[0], inside[-1]
    overall = (c1 - c0) / (t1 - t0) if t1 > t0 else math.nan
    windows = []
    for i, (ta, ca, _) in enumerate(inside):
        for tb, cb, _ in inside[i + 1 :]:
            if tb - ta >= 1.0:
                windows.append((cb - ca) / (tb - ta))
                break
    if not windows:
        return overall, overall, overall
    return overall, min(windows), max(windows)
