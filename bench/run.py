"""``python -m bench.run``: the whole benchmark, one command, one table.

In one run, each repetition measures, in this order: the baseline and
the worker at 0 ms (with a half-load phase for latency and overhead),
both across the in-flight limits at 0 ms and 300 ms, 1, 2 and 4 worker
processes, and the global rate limit with 4 processes under overload.
The worker runs with every guarantee on and its rate limit off
(``INS_WORKER_RATE_LIMIT_PER_S=0``) except in the rate-limit phase.
Results go to ``OUT/results.json``; ``--plot`` draws the PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from bench import profile, report
from bench.bed import AMQP_URL, DATABASE_URL, Bed, open_bed
from bench.scenarios import (
    RateRun,
    Run,
    Setup,
    rate_limited,
    saturate,
    spy_command,
)
from bench.services import ROOT

logger = logging.getLogger(__name__)

SECTIONS = ("main", "sweep", "slow", "processes", "rate")
PACKAGES = ("aio-pika", "aiormq", "aiohttp", "asyncpg", "lxml", "zeep")


def _ints(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip()]


def _floats(text: str) -> list[float]:
    return [float(p) for p in text.split(",") if p.strip()]


def parser() -> argparse.ArgumentParser:
    """The command's options."""
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Baseline and worker side by side on the local "
        "RabbitMQ, PostgreSQL and INSi simulator.",
    )
    p.add_argument("--runs", type=int, default=3, help="repetitions")
    p.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="requests each process handles before a measured burst",
    )
    p.add_argument(
        "--messages",
        type=int,
        default=3000,
        help="requests per saturating burst",
    )
    p.add_argument(
        "--limits",
        type=_ints,
        default=[8, 16, 32, 64, 128],
        help="in-flight limits of the sweep",
    )
    p.add_argument(
        "--processes",
        type=_ints,
        default=[1, 2, 4],
        help="worker process counts on one broker",
    )
    p.add_argument(
        "--slow-seconds",
        type=float,
        default=10.0,
        help="length of a 300 ms burst at the ideal rate",
    )
    p.add_argument(
        "--half-load-s",
        type=float,
        default=10.0,
        help="length of the half-load phase",
    )
    p.add_argument(
        "--rate-limits",
        type=_floats,
        default=[20.0],
        help="INS_WORKER_RATE_LIMIT_PER_S values to check",
    )
    p.add_argument("--rate-processes", type=int, default=4)
    p.add_argument(
        "--rate-overload",
        type=float,
        default=2.0,
        help="requests offered per second, times the limit",
    )
    p.add_argument(
        "--rate-seconds",
        type=float,
        default=15.0,
        help="how long requests are offered",
    )
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"which of {','.join(SECTIONS)} to run",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a few messages per phase, one run: checks the "
        "harness works, measures nothing",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="then profile one saturated worker with py-spy",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new one under /tmp)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="write the PNG there (needs matplotlib)",
    )
    p.add_argument(
        "--worker-cmd",
        default=None,
        help="command running the worker (default: ins-worker "
        "run from this venv)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the worker (repeatable)",
    )
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="wait before each measurement until other processes use "
        "fewer cores than this",
    )
    p.add_argument(
        "--patience-s",
        type=float,
        default=60.0,
        help="how long to wait for that quiet (then measure anyway)",
    )
    p.add_argument("--amqp-url", default=AMQP_URL)
    p.add_argument("--database-url", default=DATABASE_URL)
    return p  # fmt: skip


def _smoke(args: argparse.Namespace) -> None:
    args.runs = 1
    args.messages = min(args.messages, 50)
    args.warmup = min(args.warmup, 10)
    args.limits = [report.WORKER_LIMIT]
    args.slow_seconds = 0.5
    args.half_load_s = 1.0
    args.rate_seconds = 2.0


async def _versions(bed: Bed) -> dict[str, Any]:
    server = getattr(
        getattr(bed.publishing, "transport", None), "connection", None
    )
    properties = getattr(server, "server_properties", {}) or {}
    rabbit = properties.get("version", b"")
    return {
        **_host(),
        **await asyncio.to_thread(_revision),
        "rabbitmq": rabbit.decode() if isinstance(rabbit, bytes) else rabbit,
        "postgresql": await bed.db.fetchval("SHOW server_version"),
        "packages": {p: metadata.version(p) for p in PACKAGES},
    }


def _revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout.strip()

    changed = git("status", "--porcelain", "worker")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "worker_files_changed": len(changed.splitlines()),
    }


def _host() -> dict[str, Any]:
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu": model,
        "memory_gib": round(memory_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _slow_messages(args: argparse.Namespace, limit: int, count: int) -> int:
    bound = report.ideal(limit, report.SLOW_MS, count)
    wanted = round(bound * float(args.slow_seconds))
    messages = int(args.messages)
    return max(min(messages, 100), min(messages, wanted))


def plan(args: argparse.Namespace) -> list[tuple[Setup, int, float]]:
    """(setup, messages, half-load seconds) of one repetition, in order."""
    sections = set(args.sections.split(","))
    steps: list[tuple[Setup, int, float]] = []
    seen: set[Setup] = set()

    def add(setup: Setup, messages: int, half_s: float = 0.0) -> None:
        if setup not in seen:
            seen.add(setup)
            steps.append((setup, messages, half_s))

    if "main" in sections:
        add(
            Setup("baseline", report.BASELINE_LIMIT, 0.0),
            args.messages,
            args.half_load_s,
        )
        add(Setup("worker", report.WORKER_LIMIT, 0.0),
            args.messages, args.half_load_s)  # fmt: skip
    for latency, name in ((0.0, "sweep"), (report.SLOW_MS, "slow")):
        if name not in sections:
            continue
        limits = list(args.limits)
        if latency > 0 and report.WORKER_LIMIT not in limits:
            limits.append(report.WORKER_LIMIT)
        for limit in limits:
            count = (
                args.messages
                if latency == 0
                else _slow_messages(args, limit, 1)
            )
            for kind in ("baseline", "worker"):
                add(Setup(kind, limit, latency), count)
    if "processes" in sections:
        for latency in (0.0, report.SLOW_MS):
            for count in args.processes:
                messages = (
                    args.messages
                    if latency == 0
                    else _slow_messages(args, report.WORKER_LIMIT, count)
                )
                add(Setup("worker", report.WORKER_LIMIT, latency, count),
                    messages)  # fmt: skip
    return steps


async def measure(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Every repetition of the plan; the results in their JSON form."""
    extra = dict(item.split("=", 1) for item in args.env)
    bed = await open_bed(
        amqp_url=args.amqp_url,
        database_url=args.database_url,
        out_dir=out,
        worker_cmd=args.worker_cmd,
        worker_env=extra,
    )
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {
            "runs": args.runs,
            "messages": args.messages,
            "warmup": args.warmup,
            "limits": args.limits,
            "processes": args.processes,
            "worker_env": extra,
            "worker_cmd": bed.worker_command,
        },
        "runs": [],
        "rate": [],
    }
    try:
        results["machine"] = await _versions(bed)
        steps = plan(args)
        for repetition in range(1, args.runs + 1):
            for setup, messages, half_s in steps:
                _note(f"run {repetition}/{args.runs}: {_name(setup)}")
                run = await _attempt(
                    bed,
                    args,
                    functools.partial(
                        saturate,
                        bed,
                        setup,
                        messages,
                        half_s,
                        warmup=args.warmup,
                    ),
                )
                _note(
                    f"  {run.throughput:.1f} msgs/s"
                    f" (others busy: {run.background_cores:.2f} cores)"
                )
                row = dataclasses.asdict(run)
                row["repetition"] = repetition
                results["runs"].append(row)
            if "rate" in args.sections.split(","):
                for limit in args.rate_limits:
                    _note(f"run {repetition}/{args.runs}: rate {limit:g}/s")
                    rated = await _attempt(
                        bed,
                        args,
                        functools.partial(
                            rate_limited,
                            bed,
                            limit_per_s=limit,
                            processes=args.rate_processes,
                            overload=args.rate_overload,
                            seconds=args.rate_seconds,
                        ),
                    )
                    _note(f"  {rated.measured_per_s:.1f} calls/s")
                    results["rate"].append(dataclasses.asdict(rated))
        if args.profile:
            results["profile"] = await _profile(bed, args, out)
    finally:
        await bed.close()
    return results


Measured = TypeVar("Measured", Run, RateRun)

#: tries of one measurement (a broker restarted by someone else, say)
TRIES = 3

#: a wait between two events that only a disturbance explains
STALL_MS = 3000.0


async def _attempt(
    bed: Bed,
    args: argparse.Namespace,
    measurement: Callable[[], Awaitable[Measured]],
) -> Measured:
    """Measure on a quiet machine; again if a connection was lost."""
    for attempt in range(1, TRIES + 1):
        await bed.reconnect()
        background = await bed.wait_quiet(args.quiet_cores, args.patience_s)
        try:
            result = await measurement()
        except Exception as exc:  # retried, and re-raised at the end
            if attempt == TRIES:
                raise
            _note(f"  disturbed ({type(exc).__name__}: {exc}); again")
            continue
        if bed.disturbed and attempt < TRIES:
            _note("  a connection was lost during the run; again")
            continue
        stall = getattr(result, "max_gap_ms", 0.0)
        if stall > STALL_MS and attempt < TRIES:
            # Nothing in a healthy run waits this long (the relay polls
            # every second): a server was restarted under it.
            _note(f"  stalled {stall / 1000:.1f} s; again")
            continue
        result.background_cores = background
        return result
    raise AssertionError("unreachable")


async def _profile(
    bed: Bed, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    path = out / "profile.txt"
    _note("profile: worker at saturation under py-spy")
    run = await saturate(
        bed,
        Setup("worker", report.WORKER_LIMIT, 0.0),
        max(args.messages, 3000),
        profile=path,
        warmup=args.warmup,
    )
    cpu_s = run.cpu_per_1000["subject"] * run.messages / 1000.0
    lines = await asyncio.to_thread(_lines, path)
    text = profile.summary(
        profile.read(lines),
        messages=run.messages,
        cpu_s=cpu_s,
    )
    return {
        "throughput": run.throughput,
        "messages": run.messages,
        "cpu_s": cpu_s,
        "summary": text,
    }


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _name(setup: Setup) -> str:
    return (
        f"{setup.kind} limit={setup.limit} {setup.latency_ms:g} ms"
        f" x{setup.processes}"
    )


def _note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table, write the JSON (and the PNG if asked)."""
    args = parser().parse_args(argv)
    if args.smoke:
        _smoke(args)
    if args.profile and shutil.which(spy_command()) is None:
        print("--profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 2
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or Path(f"/tmp/ins-worker-bench-{stamp}")
    out.mkdir(parents=True, exist_ok=True)

    results = _json_safe(asyncio.run(measure(args, out)))
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = report.render(results)
    (out / "report.md").write_text(text + "\n")
    print(text)
    if "profile" in results:
        summary = results["profile"]["summary"]
        (out / "profile-summary.txt").write_text(summary + "\n")
        print("\nprofile of one saturated worker:\n")
        print(results["profile"]["summary"])
    if args.plot is not None:
        try:
            from bench.plot import draw
        except ImportError:
            print("no plot: matplotlib is not installed", file=sys.stderr)
        else:
            draw(results, args.plot)
    print(f"\nresults in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
