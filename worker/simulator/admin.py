"""The simulator's admin API: fault injection and statistics, over HTTP.

- ``GET /_admin/faults``: the fault configuration in force (JSON form of
  :mod:`worker.simulator.faults`, with what is left of the queue);
- ``PUT /_admin/faults``: replace it; ``400`` with ``{"error": ...}``
  when the document is off the form;
- ``GET /_admin/stats``: calls received, by outcome
  (:mod:`worker.simulator.stats`);
- ``POST /_admin/reset``: statistics to zero, fault configuration back
  to the one given at construction.

The outage switch is not here: once the listening socket is closed no
HTTP request can reach the simulator to turn it back on; it is a method
of the in-process :class:`~worker.simulator.server.Simulator`.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web

from worker.simulator.faults import FaultConfig
from worker.simulator.stats import CallStats

logger = logging.getLogger(__name__)


class SimulatorControl(Protocol):
    """What the admin API drives."""

    @property
    def faults(self) -> FaultConfig:
        """The fault configuration in force."""
        ...

    def set_faults(self, config: FaultConfig) -> None:
        """Replace the fault configuration."""
        ...

    @property
    def stats(self) -> CallStats:
        """The call counters."""
        ...

    def reset(self) -> None:
        """Counters to zero, faults as at construction."""
        ...


def admin_routes(control: SimulatorControl) -> list[web.RouteDef]:
    """The routes of the admin API, bound to ``control``."""

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(control.faults.to_json())

    async def put_faults(request: web.Request) -> web.Response:
        try:
            config = FaultConfig.from_json(await request.json())
        except (ValueError, TypeError) as exc:
            # json.JSONDecodeError is a ValueError too
            return web.json_response({"error": str(exc)}, status=400)

        control.set_faults(config)
        logger.info("simulator_faults_set modes=%d", len(config.rates))
        return web.json_response(control.faults.to_json())

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(control.stats.to_json())

    async def post_reset(request: web.Request) -> web.Response:
        control.reset()
        return web.json_response(
            {"faults": control.faults.to_json(), **control.stats.to_json()}
        )

    return [
        web.get("/_admin/faults", get_faults),
        web.put("/_admin/faults", put_faults),
        web.get("/_admin/stats", get_stats),
        web.post("/_admin/reset", post_reset),
    ]
