"""Command line of the simulator: ``ins-worker simulator`` and ``-m``.

:func:`add_arguments` and :func:`run` mount it as a subcommand of any
argparse parser; :func:`main` is the stand-alone entry
(``python -m worker.simulator``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from worker.errors import ConfigurationError
from worker.simulator.dataset import load_dataset
from worker.simulator.faults import FaultConfig, FaultMode
from worker.simulator.pki import make_pki
from worker.simulator.server import DEFAULT_IDAM, Simulator
from worker.simulator.soap import Dialect, FaultStyle

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8089


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the simulator's options on ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="listen port"
    )
    parser.add_argument(
        "--dialect",
        choices=[d.value for d in Dialect],
        default=Dialect.LIVE.value,
        help="serialisation of results (default: live)",
    )
    parser.add_argument(
        "--fault-style",
        choices=[s.value for s in FaultStyle],
        default=None,
        help="force one fault serialisation (default: as each sample)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="latency of each call"
    )
    parser.add_argument(
        "--jitter-ms",
        type=float,
        default=0.0,
        help="random extra latency, uniform between 0 and this",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="probability that a call fails (shared among --fault-mode)",
    )
    parser.add_argument(
        "--fault-mode",
        action="append",
        choices=[m.value for m in FaultMode],
        help="failure injected at --fault-rate; repeatable "
        "(default: insi_102)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the fault draws"
    )
    parser.add_argument(
        "--idam",
        action="append",
        help=f"IDAM accepted; repeatable (default: {DEFAULT_IDAM})",
    )
    parser.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        help="make or reuse a test PKI there and require mutual TLS",
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="JSON data set file (see worker.simulator.dataset)",
    )


def simulator_from_args(args: argparse.Namespace) -> Simulator:
    """The simulator the options describe; `ConfigurationError` if bad."""
    chosen = args.fault_mode or [FaultMode.BACKEND_ERROR.value]
    modes = [FaultMode(m) for m in chosen]
    try:
        faults = FaultConfig.spread(
            args.fault_rate,
            modes,
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigurationError(f"simulator faults: {exc}") from None

    dataset = load_dataset(args.dataset) if args.dataset else None
    tls = make_pki(args.tls_dir) if args.tls_dir else None
    return Simulator(
        dataset=dataset,
        faults=faults,
        dialect=args.dialect,
        allowed_idam=args.idam or (DEFAULT_IDAM,),
        tls=tls,
        fault_style=args.fault_style,
    )


async def serve(
    args: argparse.Namespace, stop: asyncio.Event | None = None
) -> None:
    """Run the simulator until ``stop`` is set (or SIGINT/SIGTERM)."""
    simulator = simulator_from_args(args)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    url = await simulator.start(args.host, args.port)
    try:
        print(f"INSi simulator listening on {url}", flush=True)
        if simulator.tls is not None:
            print(f"test PKI in {simulator.tls.directory}", flush=True)
        await stop.wait()
    finally:
        await simulator.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


def run(args: argparse.Namespace) -> int:
    """The subcommand's body: serve, then the exit status."""
    try:
        asyncio.run(serve(args))
    except ConfigurationError as exc:
        print(f"ins-worker simulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ins-worker simulator: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run."""
    parser = argparse.ArgumentParser(
        prog="ins-worker simulator",
        description="INSi teleservice simulator (test tooling only)",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
