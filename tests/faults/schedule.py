"""The fault schedule: N requests through real workers while faults hit.

Run from the project root::

    python -m tests.faults.schedule --requests 10000 --seed 7

It starts the INSi simulator (50-300 ms latency) and two ``ins-worker
run`` processes on a database and queue names of their own, publishes
the requests at a steady pace, injects every kind of fault of
:mod:`.injectors` at seeded random moments, waits until the system is
quiet, and counts (:mod:`.tally`). Exit status 0 only when nothing was
lost, duplicated or unexpected, every outcome has its event, every
dead letter is where it belongs and every SIGTERM ended with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from worker.settings import Settings
from worker.store import migrate

from . import layout, servers, tally
from .injectors import KINDS, Target
from .processes import SimulatorProcess, WorkerPool
from .traffic import Publishing, Request, make_requests, publish_all

logger = logging.getLogger("faults")

VHOST = layout.VHOST
AMQP_ROOT = layout.AMQP_ROOT
PG_ROOT = layout.PG_ROOT


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The size and shape of one run."""

    requests: int = 10_000
    seed: int = 1
    workers: int = 2
    rounds: int = 0
    publish_s: float = 0.0
    invalid_share: float = 0.03
    settle_timeout_s: float = 600.0
    keep: bool = False
    workdir: Path | None = None
    kinds: tuple[str, ...] = tuple(KINDS)

    @property
    def fault_rounds(self) -> int:
        """How many times each kind of fault is injected."""
        return self.rounds or max(1, self.requests // 3000)

    @property
    def publish_seconds(self) -> float:
        """How long publishing is spread over."""
        return self.publish_s or max(30.0, self.requests / 60.0)


@dataclass(slots=True)
class Report:
    """Everything a run measured."""

    seed: int
    tag: str
    workdir: str
    figures: tally.Figures = field(default_factory=tally.Figures)
    faults: list[dict[str, Any]] = field(default_factory=list)
    publishing: dict[str, Any] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    quiet_after_s: float | None = None
    duration_s: float = 0.0

    @property
    def sigterm_ok(self) -> bool:
        """Every SIGTERM ended with exit status 0."""
        return all(
            e["status"] == 0 for w in self.workers for e in w["sigterm_exits"]
        )

    @property
    def passed(self) -> bool:
        """The verdict of the run."""
        return (
            self.figures.passed
            and self.sigterm_ok
            and self.quiet_after_s is not None
        )

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON document."""
        by_kind: dict[str, int] = {}
        for fault in self.faults:
            by_kind[fault["kind"]] = by_kind.get(fault["kind"], 0) + 1
        return {
            "passed": self.passed,
            "seed": self.seed,
            "tag": self.tag,
            "workdir": self.workdir,
            "duration_s": round(self.duration_s, 1),
            "quiet_after_s": self.quiet_after_s,
            "figures": self.figures.summary(),
            "faults_by_kind": by_kind,
            "faults": self.faults,
            "publishing": self.publishing,
            "workers": self.workers,
            "sigterm_ok": self.sigterm_ok,
        }


def worker_env(tag: str, database_url: str, insi_url: str) -> dict[str, str]:
    """The ``INS_WORKER_*`` settings of the run's workers."""
    prefix = f"f.{tag}"
    values = {
        "ENVIRONMENT": "qualification",
        "AMQP_URL": AMQP_ROOT + VHOST,
        "DATABASE_URL": database_url,
        "REQUESTS_EXCHANGE": f"{prefix}.requests",
        "REQUESTS_QUEUE": f"{prefix}.requests.v1",
        "DEAD_LETTER_EXCHANGE": f"{prefix}.dlx",
        "DEAD_LETTER_QUEUE": f"{prefix}.dlq",
        "EVENTS_EXCHANGE": f"{prefix}.events",
        "EVENT_SOURCE": f"urn:ins-worker:faults:{tag}",
        "INSI_URL": insi_url,
        "MESSAGE_BUDGET_S": "30",
        "INSI_TIMEOUT_S": "3",
        "INSI_CONNECT_TIMEOUT_S": "2",
        "RETRY_DELAYS_S": "1,4,10",
        "BREAKER_RESET_S": "3",
        "SHUTDOWN_BUDGET_S": "10",
        "OUTBOX_POLL_S": "0.5",
        "RATE_LIMIT_PER_S": "400",
        "LOG_LEVEL": "INFO",
    }
    env = {k: v for k, v in os.environ.items() if "INS_WORKER_" not in k}
    env.update({f"INS_WORKER_{k}": v for k, v in values.items()})
    return env


def draw_plan(
    config: RunConfig, rng: random.Random
) -> list[tuple[float, str]]:
    """(moment in seconds from the start, fault kind), in time order."""
    kinds = list(config.kinds) * config.fault_rounds
    rng.shuffle(kinds)
    low, high = 0.1 * config.publish_seconds, config.publish_seconds
    moments = sorted(rng.uniform(low, high) for _ in kinds)
    return list(zip(moments, kinds, strict=True))


async def inject(
    plan: list[tuple[float, str]],
    target: Target,
    rng: random.Random,
    started: float,
) -> list[dict[str, Any]]:
    """Apply the plan, one fault at a time, each at its moment or later."""
    done = []
    for moment, kind in plan:
        await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
        began = time.monotonic()
        logger.info("fault kind=%s at_s=%.1f", kind, began - started)
        try:
            detail = await KINDS[kind](target, rng)
        except Exception as exc:  # a failed injection is reported
            logger.exception("fault_failed kind=%s", kind)
            detail = {"error": type(exc).__name__}
        done.append(
            {
                "kind": kind,
                "planned_s": round(moment, 1),
                "at_s": round(began - started, 1),
                "took_s": round(time.monotonic() - began, 1),
                **detail,
            }
        )
    return done


@dataclass(slots=True)
class Run:
    """The handles of one run, from the first step to the last."""

    config: RunConfig
    report: Report
    workdir: Path
    database: str
    settings: Settings
    simulator: SimulatorProcess
    workers: WorkerPool
    audit: str

    @property
    def db_url(self) -> str:
        """The run's own database."""
        return PG_ROOT + self.database


async def _prepare(config: RunConfig) -> Run:
    """Servers up, a database and queues of the run, processes built."""
    tag = f"{config.seed}-{uuid.uuid4().hex[:6]}"
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="ins-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    await servers.ensure_rabbitmq()
    await servers.ensure_postgres()
    await layout.ensure_vhost()

    database = f"ins_worker_faults_{tag.replace('-', '_')}"
    await migrate.ensure_database(PG_ROOT + database)
    await migrate.apply(PG_ROOT + database)
    simulator = SimulatorProcess(workdir, config.seed, (50, 250))
    env = worker_env(tag, PG_ROOT + database, simulator.url)
    settings = Settings.from_env(
        {k: v for k, v in env.items() if k.startswith("INS_WORKER_")}
    )
    audit = f"f.{tag}.events.audit"
    await layout.declare(settings, audit)

    report = Report(config.seed, tag, str(workdir))
    workers = WorkerPool(workdir, env, config.workers)
    return Run(
        config, report, workdir, database, settings, simulator, workers, audit
    )


async def _drive(run: Run, requests: list[Request]) -> Publishing:
    """Publish while the faults of the plan hit, one after the other."""
    config, settings = run.config, run.settings
    target = Target(
        run.simulator, run.workers, PG_ROOT + "postgres", run.database, 40
    )
    publishing = Publishing()
    clock = time.monotonic()
    publisher = asyncio.create_task(
        publish_all(
            settings.amqp_url,
            settings.requests_exchange,
            settings.requests_routing_key,
            requests,
            config.publish_seconds,
            publishing,
            config.settle_timeout_s,
        )
    )

    rng = random.Random(config.seed)
    plan = draw_plan(config, rng)
    run.report.faults = await inject(plan, target, rng, clock)
    await publisher

    run.report.publishing = {
        "accepted": len(publishing.accepted),
        "retried_batches": publishing.retried,
        "connections": publishing.reconnects,
        "took_s": round((publishing.finished_at or clock) - clock, 1),
    }
    return publishing


async def _settle(
    run: Run, requests: list[Request], accepted: set[str]
) -> None:
    """Wait (bounded) until every outcome is in and the queues are empty."""
    expected = [
        r.message_id
        for r in requests
        if r.has_outcome and r.message_id in accepted
    ]
    dead = sum(1 for r in requests if r.dead_letter)
    started = time.monotonic()
    while time.monotonic() < started + run.config.settle_timeout_s:
        if await layout.quiet(run.settings, run.db_url, expected, dead):
            run.report.quiet_after_s = round(time.monotonic() - started, 1)
            return
        await asyncio.sleep(1.0)


async def _collect(
    run: Run, requests: list[Request], accepted: set[str]
) -> None:
    """Read the events and dead letters, count against the database."""
    url = run.settings.amqp_url
    events = await tally.drain_queue(url, run.audit)
    dead = await tally.drain_queue(url, run.settings.dead_letter_queue)
    kept = [
        {
            "message_id": message_id,
            "reason": headers.get("x-ins-reason"),
            "death": headers.get("x-first-death-reason"),
        }
        for _, message_id, headers in dead
    ]
    (run.workdir / "dead_letters.json").write_text(
        json.dumps(kept, indent=1, default=str)
    )

    db = await asyncpg.connect(run.db_url, timeout=10)
    try:
        run.report.figures = await tally.count(
            db, requests, accepted, events, dead
        )
    finally:
        await db.close()


async def run_schedule(config: RunConfig) -> Report:
    """One whole run; the servers are up again when it returns."""
    started = time.monotonic()
    run = await _prepare(config)
    requests = make_requests(
        config.requests,
        config.seed,
        config.invalid_share,
        "urn:example:pas:faults",
    )

    watch: asyncio.Task[None] | None = None
    try:
        await run.simulator.start()
        await run.workers.start_all()
        watch = asyncio.create_task(run.workers.watch())
        publishing = await _drive(run, requests)
        await _settle(run, requests, publishing.accepted)
        await run.workers.stop_all(40)
        await run.simulator.stop()
        await _collect(run, requests, publishing.accepted)
    finally:
        if watch is not None:
            watch.cancel()
        await run.workers.stop_all(40)
        await run.simulator.stop()
        await servers.ensure_rabbitmq()
        await servers.ensure_postgres()
        run.report.workers = [
            {
                "index": s.index,
                "starts": s.starts,
                "sigterm_exits": s.sigterm_exits,
                "unplanned_exits": s.unplanned_exits,
            }
            for s in run.workers.slots
        ]
        run.report.duration_s = time.monotonic() - started

    document = json.dumps(run.report.to_json(), indent=2)
    (run.workdir / "report.json").write_text(document)
    if run.report.passed and not config.keep:
        await layout.cleanup(run.settings, run.audit, run.database)
    return run.report


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.faults.schedule``: run, print the report."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.schedule",
        description="the worker under a seeded schedule of faults",
    )
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=0, help="times each fault kind runs"
    )
    parser.add_argument(
        "--publish-s", type=float, default=0.0, help="publishing spread"
    )
    parser.add_argument("--settle-timeout-s", type=float, default=600.0)
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="comma-separated fault kinds (default: all; '' for none)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--keep", action="store_true", help="keep queues and database"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    config = RunConfig(
        requests=args.requests,
        seed=args.seed,
        workers=args.workers,
        rounds=args.rounds,
        publish_s=args.publish_s,
        settle_timeout_s=args.settle_timeout_s,
        keep=args.keep,
        workdir=args.workdir,
        kinds=tuple(k for k in args.kinds.split(",") if k),
    )
    report = asyncio.run(run_schedule(config))
    print(json.dumps(report.to_json(), indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
