"""The processes a benchmark starts: simulator, baseline, worker.

Each runs as its own OS process, so that its CPU and memory can be read
from /proc and the harness (which publishes and collects) never shares
an event loop with what it measures. Logs go to files in the run's
output folder, never to a pipe that could fill up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

#: the project's root: ``bench`` is importable from there
ROOT = Path(__file__).resolve().parents[1]

#: how long a process may take to say it is ready
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_command(text: str | None) -> list[str]:
    """The command that runs the worker (default: this venv's script)."""
    if text:
        return shlex.split(text)
    script = Path(sys.executable).parent / "ins-worker"
    if script.exists():
        return [str(script), "run"]
    return [sys.executable, "-m", "worker", "run"]


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without any ``INS_WORKER_*``, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("INS_WORKER_")
    }
    env.update(extra)
    return env


class Service:
    """One child process and its log file."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0

    async def start(self) -> None:
        """Start the process and wait until it is ready."""
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """The process id (once started)."""
        assert self.process is not None
        return self.process.pid

    async def spawn(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        stdout_pipe: bool = False,
    ) -> None:
        """Start the process; stderr (and stdout unless piped) to the log."""
        with self.log_path.open("ab") as log:
            self.started_at = time.perf_counter()
            self.process = await asyncio.create_subprocess_exec(
                *command,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if stdout_pipe else log,
                stderr=log,
            )

    async def first_line(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """The first line the process prints on stdout."""
        assert self.process is not None and self.process.stdout is not None
        try:
            line = await asyncio.wait_for(
                self.process.stdout.readline(), timeout_s
            )
        except TimeoutError:
            raise RuntimeError(f"{self.name} said nothing in time") from None
        if not line:
            raise RuntimeError(
                f"{self.name} exited early; see {self.log_path}"
            )
        return line.decode().strip()

    async def stop(self, timeout_s: float = 40.0) -> int:
        """SIGTERM, wait, and SIGKILL past the timeout; the exit status."""
        process = self.process
        if process is None:
            return 0
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                process.kill()
                await process.wait()
        assert process.returncode is not None
        return process.returncode


class SimulatorService(Service):
    """``ins-worker simulator`` on a free port, latency set over HTTP."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__("simulator", log_dir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"

    @property
    def lps_url(self) -> str:
        """The SOAP endpoint."""
        return f"{self.base_url}/lps"

    async def start(self) -> None:
        """Start and wait until it listens."""
        command = [
            *worker_command(None)[:-1],
            "simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        env = clean_env({"INS_WORKER_LOG_LEVEL": "WARNING"})
        await self.spawn(command, env, stdout_pipe=True)
        line = await self.first_line()
        if "listening" not in line:
            raise RuntimeError(f"simulator said {line!r}")

    async def _admin(
        self, method: str, path: str, payload: Any = None
    ) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                method, f"{self.base_url}{path}", json=payload
            ) as response,
        ):
            response.raise_for_status()
            result: dict[str, Any] = await response.json()
            return result

    async def configure(self, latency_ms: float) -> None:
        """Counters to zero; answer every call after ``latency_ms``."""
        await self._admin("POST", "/_admin/reset")
        await self._admin("PUT", "/_admin/faults", {"latency_ms": latency_ms})

    async def calls(self) -> int:
        """Calls received since the last reset."""
        stats = await self._admin("GET", "/_admin/stats")
        return int(stats["total"])


class WorkerService(Service):
    """``ins-worker run`` with the given settings and its health port."""

    def __init__(
        self,
        name: str,
        log_dir: Path,
        command: Sequence[str],
        settings: Mapping[str, str],
    ) -> None:
        super().__init__(name, log_dir)
        self.command = list(command)
        self.port = free_port()
        self.settings = {**settings, "INS_WORKER_HEALTH_PORT": str(self.port)}
        self.ready_s = float("nan")

    async def start(self) -> None:
        """Start it; return once ``/readyz`` answers 200 (timed)."""
        await self.spawn(self.command, clean_env(self.settings))
        url = f"http://127.0.0.1:{self.port}/readyz"
        timeout = aiohttp.ClientTimeout(total=1.0)
        deadline = self.started_at + READY_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.perf_counter() < deadline:
                assert self.process is not None
                if self.process.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            self.ready_s = (
                                time.perf_counter() - self.started_at
                            )
                            return
                await asyncio.sleep(0.01)
        raise RuntimeError(f"{self.name} not ready; see {self.log_path}")

    async def metrics(self) -> str:
        """The text of ``/metrics``."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        timeout = aiohttp.ClientTimeout(total=5.0)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as response,
        ):
            return await response.text()


class BaselineService(Service):
    """``python -m bench.baseline``: ready when it prints ``ready``."""

    def __init__(self, log_dir: Path, arguments: Sequence[str]) -> None:
        super().__init__("baseline", log_dir)
        self.arguments = list(arguments)

    async def start(self) -> None:
        """Start and wait for its ``ready`` line."""
        command = [sys.executable, "-m", "bench.baseline", *self.arguments]
        root = str(ROOT)
        path = os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p
        )
        await self.spawn(
            command, clean_env({"PYTHONPATH": path}), stdout_pipe=True
        )
        line = await self.first_line()
        if line != "ready":
            raise RuntimeError(f"baseline said {line!r}")
