"""INSi simulator: the teleservice's contract, dialects and failures.

Test and demo tooling, never used by the worker itself. Modules:
``dataset`` (persons and matching), ``soap``/``results``/``soapfaults``
(what goes on the wire), ``inbound`` (reading requests), ``faults`` and
``hostile`` (injection), ``pki`` (test certificates), ``admin`` and
``stats`` (run-time control), ``server`` (the aiohttp app), ``cli``.
"""

from worker.simulator.dataset import (
    Dataset,
    Identity,
    RegisteredIns,
    default_dataset,
    load_dataset,
)
from worker.simulator.faults import FaultConfig, FaultInjector, FaultMode
from worker.simulator.pki import ClientCredentials, SimulatorPki, make_pki
from worker.simulator.server import Simulator
from worker.simulator.soap import Dialect, FaultStyle

__all__ = [
    "ClientCredentials",
    "Dataset",
    "Dialect",
    "FaultConfig",
    "FaultInjector",
    "FaultMode",
    "FaultStyle",
    "Identity",
    "RegisteredIns",
    "Simulator",
    "SimulatorPki",
    "default_dataset",
    "load_dataset",
    "make_pki",
]
