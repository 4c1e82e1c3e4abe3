"""``/metrics``, ``/livez`` and ``/readyz`` on one small aiohttp server.

Liveness says only that this process works: the event loop answers and
no handler is stuck past its deadline. It never checks a dependency, so a
broker or database outage cannot cause a restart storm. Readiness says
whether the process does useful work right now: consumer attached,
database reachable within a short timeout, breaker not open, certificates
loaded, no configuration fault seen. Its checks run side by side, each
bounded by ``check_timeout_s``, so the answer comes well within the
probe's own timeout even when a dependency hangs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker import metrics

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool] | bool]

HEARTBEAT_S = 0.5

#: time one readiness check may take (the probe itself allows 3 s)
CHECK_TIMEOUT_S = 1.5


@dataclass(slots=True)
class HandlerClock:
    """Start times of the handlers running now, to find a stuck one.

    A handler is stuck once it has run longer than its budget plus
    ``grace_s``: the budget already bounds every await, so only a bug
    (a lost timeout, a blocking call) gets there.
    """

    budget_s: float
    grace_s: float = 10.0
    running: dict[int, float] = field(default_factory=dict)

    def start(self, key: int) -> None:
        """A handler starts."""
        self.running[key] = time.monotonic()

    def stop(self, key: int) -> None:
        """A handler ends."""
        self.running.pop(key, None)

    def stuck(self) -> int:
        """Handlers running longer than their budget plus the grace."""
        limit = time.monotonic() - self.budget_s - self.grace_s
        return sum(1 for started in self.running.values() if started < limit)


class Health:
    """The state behind the probes, and the server that shows it."""

    def __init__(
        self,
        clock: HandlerClock,
        max_lag_s: float = 5.0,
        check_timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self._clock = clock
        self._max_lag_s = max_lag_s
        self._check_timeout_s = check_timeout_s
        self._checks: dict[str, Check] = {}
        self._last_beat = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._configuration_error: str | None = None
        self.configuration_error = None
        self.port: int | None = None

    @property
    def clock(self) -> HandlerClock:
        """The handler clock liveness reads."""
        return self._clock

    @property
    def configuration_error(self) -> str | None:
        """Why the configuration is known to be wrong, if it is."""
        return self._configuration_error

    @configuration_error.setter
    def configuration_error(self, reason: str | None) -> None:
        self._configuration_error = reason
        metrics.configuration_error.set(0 if reason is None else 1)

    def add_check(self, name: str, check: Check) -> None:
        """A readiness condition; ``name`` shows in the answer."""
        self._checks[name] = check

    async def heartbeat(self, stop: asyncio.Event) -> None:
        """Measure event-loop lag until ``stop``."""
        while not stop.is_set():
            expected = time.monotonic() + HEARTBEAT_S
            await asyncio.sleep(HEARTBEAT_S)
            now = time.monotonic()
            metrics.event_loop_lag.set(max(0.0, now - expected))
            self._last_beat = now

    def live(self) -> tuple[bool, dict[str, object]]:
        """The liveness verdict and its reasons."""
        silent = time.monotonic() - self._last_beat
        stuck = self._clock.stuck()
        ok = silent < self._max_lag_s + HEARTBEAT_S and stuck == 0
        return ok, {"loop_silent_s": round(silent, 3), "stuck_handlers": stuck}

    async def ready(self) -> tuple[bool, dict[str, object]]:
        """The readiness verdict, condition by condition."""
        names = list(self._checks)
        verdicts = await asyncio.gather(
            *(self._run_check(self._checks[name]) for name in names)
        )
        results: dict[str, object] = dict(zip(names, verdicts, strict=True))
        ok = all(verdicts)
        if self._configuration_error is not None:
            ok = False
            results["configuration"] = False
            results["configuration_error"] = self._configuration_error
        return ok, results

    async def _run_check(self, check: Check) -> bool:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await asyncio.wait_for(value, self._check_timeout_s)
        except Exception:  # a failing check is a "no", not a crash
            return False
        return bool(value)

    def app(self) -> web.Application:
        """The aiohttp application with the three routes."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self, host: str, port: int) -> int:
        """Serve; return the port actually bound (also in ``port``)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = port
        for address in self._runner.addresses:
            bound = int(address[1])
            break
        self.port = bound
        logger.info("health_listening host=%s port=%d", host, bound)
        return bound

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.port = None

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(metrics.REGISTRY)
        return web.Response(
            body=body, headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _livez(self, _: web.Request) -> web.Response:
        ok, detail = self.live()
        return web.json_response(
            {"live": ok, **detail}, status=200 if ok else 503
        )

    async def _readyz(self, _: web.Request) -> web.Response:
        ok, detail = await self.ready()
        return web.json_response(
            {"ready": ok, **detail}, status=200 if ok else 503
        )
