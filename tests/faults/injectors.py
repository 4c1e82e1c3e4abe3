"""The kinds of fault a schedule injects, one coroutine each.

Every injector takes the run's handles and its own seeded random
generator (for durations and choices), does its damage, repairs what an
operator or an orchestrator would repair (a crashed INSi comes back, a
killed pod is started again), and returns a short description for the
report.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import servers
from .processes import SimulatorProcess, WorkerPool


@dataclass(slots=True)
class Target:
    """What the faults act on."""

    simulator: SimulatorProcess
    workers: WorkerPool
    admin_url: str
    database: str
    shutdown_timeout_s: float


Injector = Callable[[Target, random.Random], Awaitable[dict[str, Any]]]


async def close_connection(t: Target, rng: random.Random) -> dict[str, Any]:
    """``rabbitmqctl close_connection`` on some of the workers' links."""
    found = await servers.worker_connections(t.workers.pids())
    if not found:
        return {"closed": 0}
    chosen = rng.sample(found, rng.randint(1, len(found)))
    closed = [n for pid, n in chosen if await servers.close_connection(pid)]
    roles = sorted(name.split()[1] for name in closed)
    return {"closed": len(closed), "roles": roles}


async def rabbitmq_restart(t: Target, rng: random.Random) -> dict[str, Any]:
    """The whole broker application stops and starts."""
    down = await servers.restart_rabbitmq()
    return {"down_s": round(down, 1)}


async def pg_terminate(t: Target, rng: random.Random) -> dict[str, Any]:
    """``pg_terminate_backend`` on every worker session of the run."""
    killed = await servers.terminate_backends(t.admin_url, t.database)
    return {"terminated": killed}


async def postgres_restart(t: Target, rng: random.Random) -> dict[str, Any]:
    """The database cluster restarts (fast shutdown)."""
    down = await servers.restart_postgres()
    return {"down_s": round(down, 1)}


async def insi_outage(t: Target, rng: random.Random) -> dict[str, Any]:
    """INSi crashes: resets, then connection refused, then it is back."""
    seconds = rng.uniform(2.0, 6.0)
    await t.simulator.kill()
    await asyncio.sleep(seconds)
    await t.simulator.start()
    return {"down_s": round(seconds, 1)}


async def _rates_for(
    t: Target, rates: dict[str, float], seconds: float
) -> dict[str, Any]:
    await t.simulator.set_faults(rates)
    try:
        await asyncio.sleep(seconds)
    finally:
        await t.simulator.set_faults({})
    return {"rates": rates, "for_s": round(seconds, 1)}


async def insi_hang(t: Target, rng: random.Random) -> dict[str, Any]:
    """INSi accepts every call and never answers."""
    return await _rates_for(t, {"hang": 1.0}, rng.uniform(2.0, 5.0))


async def insi_5xx(t: Target, rng: random.Random) -> dict[str, Any]:
    """A burst of 503 without body and 502 gateway pages."""
    rates = {"http_503": 0.4, "http_502_html": 0.3}
    return await _rates_for(t, rates, rng.uniform(2.0, 5.0))


async def insi_siram40(t: Target, rng: random.Random) -> dict[str, Any]:
    """A burst of ``siram_40`` faults (``insi_102``, ``desir_1020``)."""
    rates = {"insi_102": 0.4, "desir_1020": 0.3}
    return await _rates_for(t, rates, rng.uniform(2.0, 5.0))


async def worker_sigkill(t: Target, rng: random.Random) -> dict[str, Any]:
    """A worker is killed at once, and started again a moment later."""
    slot = rng.choice(t.workers.slots)
    await t.workers.kill(slot)
    pause = rng.uniform(0.5, 2.0)
    await asyncio.sleep(pause)
    await t.workers.start(slot)
    return {"worker": slot.index, "restart_after_s": round(pause, 1)}


async def rolling_sigterm(t: Target, rng: random.Random) -> dict[str, Any]:
    """Each worker in turn: SIGTERM, wait for its exit, start anew."""
    for slot in t.workers.slots:
        await t.workers.terminate(slot, t.shutdown_timeout_s)
        await t.workers.start(slot)
    return {
        "exits": [s.sigterm_exits[-1] for s in t.workers.slots],
    }


#: every kind, by the name the report uses
KINDS: dict[str, Injector] = {
    "close_connection": close_connection,
    "rabbitmq_restart": rabbitmq_restart,
    "pg_terminate_backend": pg_terminate,
    "postgres_restart": postgres_restart,
    "insi_outage": insi_outage,
    "insi_hang": insi_hang,
    "insi_5xx_burst": insi_5xx,
    "insi_siram40_burst": insi_siram40,
    "worker_sigkill": worker_sigkill,
    "rolling_sigterm": rolling_sigterm,
}
