"""The processes of a run: the INSi simulator and the worker processes.

Each is a real ``ins-worker`` subprocess, its output appended to a log
file of the run. The worker pool also plays the orchestrator: a worker
that exits without being told to is counted and started again, as a
Kubernetes deployment would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

COMMAND = (sys.executable, "-m", "worker")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _spawn(
    args: list[str], env: dict[str, str], log: Path
) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *COMMAND,
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )


async def _http_ok(url: str, timeout_s: float) -> bool:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def _stop(
    process: asyncio.subprocess.Process, timeout_s: float
) -> int | None:
    """SIGTERM, wait; SIGKILL past ``timeout_s``; the exit status."""
    if process.returncode is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return None


class SimulatorProcess:
    """``ins-worker simulator`` on a fixed port, with realistic latency."""

    def __init__(self, workdir: Path, seed: int, latency: tuple[int, int]):
        self.port = free_port()
        self._workdir = workdir
        self._seed = seed
        self.latency_ms, self.jitter_ms = latency
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """The /lps endpoint the workers call."""
        return f"http://127.0.0.1:{self.port}/lps"

    @property
    def admin(self) -> str:
        """The fault-injection endpoint."""
        return f"http://127.0.0.1:{self.port}/_admin/faults"

    async def start(self) -> None:
        """Start it and wait until it answers."""
        args = [
            "simulator",
            "--port",
            str(self.port),
            "--latency-ms",
            str(self.latency_ms),
            "--jitter-ms",
            str(self.jitter_ms),
            "--seed",
            str(self._seed),
        ]
        env = {k: v for k, v in os.environ.items() if "INS_WORKER_" not in k}
        self._process = await _spawn(
            args, env, self._workdir / "simulator.log"
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if await _http_ok(self.admin, 1.0):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the simulator did not start")

    async def kill(self) -> None:
        """Crash it: connections reset, then refused until restarted."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def stop(self) -> None:
        """Stop it for good."""
        if self._process is not None:
            await _stop(self._process, 5)

    async def set_faults(self, rates: dict[str, float]) -> None:
        """Replace the injected faults (the latency stays)."""
        document = {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "seed": self._seed,
            "rates": rates,
        }
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.put(self.admin, json=document) as response,
        ):
            response.raise_for_status()


@dataclass(slots=True)
class WorkerSlot:
    """One worker of the pool: its process, port and history."""

    index: int
    health_port: int
    process: asyncio.subprocess.Process | None = None
    planned_stop: bool = False
    starts: int = 0
    sigterm_exits: list[dict[str, Any]] = field(default_factory=list)
    unplanned_exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        """The process id of the running worker."""
        return self.process.pid if self.process is not None else None


class WorkerPool:
    """The worker processes of the run, restarted when they die."""

    def __init__(self, workdir: Path, env: dict[str, str], count: int):
        self._workdir = workdir
        self._env = env
        self.slots = [WorkerSlot(i, free_port()) for i in range(count)]
        self._watching = True

    def pids(self) -> set[int]:
        """Pids of the workers running now."""
        return {s.pid for s in self.slots if s.pid is not None}

    async def start(self, slot: WorkerSlot, wait_ready: bool = True) -> None:
        """Start the worker of ``slot`` (and wait until it is ready)."""
        env = dict(self._env)
        env["INS_WORKER_HEALTH_PORT"] = str(slot.health_port)
        slot.process = await _spawn(
            ["run"], env, self._workdir / f"worker-{slot.index}.log"
        )
        slot.starts += 1
        slot.planned_stop = False
        if wait_ready:
            await self.wait_ready(slot, 30)

    async def start_all(self) -> None:
        """Start every worker, wait until they are ready."""
        await asyncio.gather(*(self.start(s) for s in self.slots))

    async def wait_ready(self, slot: WorkerSlot, timeout_s: float) -> bool:
        """Wait for ``/readyz`` to answer 200; False past the timeout."""
        url = f"http://127.0.0.1:{slot.health_port}/readyz"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await _http_ok(url, 1.0):
                return True
            await asyncio.sleep(0.2)
        logger.warning("worker_not_ready index=%d", slot.index)
        return False

    async def kill(self, slot: WorkerSlot) -> None:
        """SIGKILL the worker of ``slot``."""
        slot.planned_stop = True
        if slot.process is not None and slot.process.returncode is None:
            slot.process.kill()
            await slot.process.wait()

    async def terminate(self, slot: WorkerSlot, timeout_s: float) -> None:
        """SIGTERM the worker of ``slot``; record its status and time."""
        slot.planned_stop = True
        if slot.process is None or slot.process.returncode is not None:
            return
        started = time.monotonic()
        status = await _stop(slot.process, timeout_s)
        slot.sigterm_exits.append(
            {
                "status": status,
                "seconds": round(time.monotonic() - started, 2),
            }
        )

    async def watch(self) -> None:
        """Restart workers that exit on their own (the orchestrator)."""
        while self._watching:
            for slot in self.slots:
                process = slot.process
                if (
                    process is not None
                    and process.returncode is not None
                    and not slot.planned_stop
                ):
                    slot.unplanned_exits.append(process.returncode)
                    logger.warning(
                        "worker_exited index=%d status=%d",
                        slot.index,
                        process.returncode,
                    )
                    await asyncio.sleep(1.0)
                    await self.start(slot, wait_ready=False)
            await asyncio.sleep(0.3)

    async def stop_all(self, timeout_s: float) -> None:
        """SIGTERM every worker and stop watching."""
        self._watching = False
        await asyncio.gather(
            *(self.terminate(s, timeout_s) for s in self.slots)
        )
