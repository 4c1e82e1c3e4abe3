"""The ``ins-worker`` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from worker import logs
from worker.errors import ConfigurationError, InsWorkerError
from worker.settings import Settings, describe

Command = Callable[[argparse.Namespace, Settings], int]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop

    from worker.app import serve

    # uvloop: the worker is CPU-bound on its event loop (docs/performance.md)
    return uvloop.run(serve(settings, asyncio.Event()))


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from worker.store import migrate

    async def go() -> list[int]:
        if args.create_database:
            await migrate.ensure_database(settings.migration_url)
        return await migrate.apply(settings.migration_url)

    applied = asyncio.run(go())
    print(f"applied: {', '.join(map(str, applied)) or 'nothing (up to date)'}")
    return 0


def _simulator(args: argparse.Namespace, settings: Settings) -> int:
    from worker.simulator import cli as simulator_cli

    return simulator_cli.run(args)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from worker.demo import run_demo

    return asyncio.run(run_demo(settings, timeout_s=args.timeout))


def _config(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print("| variable | type | default | meaning |")
        print("| --- | --- | --- | --- |")
        for name, kind, default, meaning in describe():
            shown = f"`{default}`" if default else ""
            print(f"| `{name}` | {kind} | {shown} | {meaning} |")
        return 0
    current = dataclasses.asdict(settings)
    for name, kind, _, meaning in describe():
        key = name.removeprefix("INS_WORKER_").lower()
        print(f"{name}={current[key]}  # {kind}: {meaning}")
    return 0


def _insi_parse(args: argparse.Namespace, settings: Settings) -> int:
    from worker.insi.report import parse_file

    status, document = parse_file(Path(args.file))
    if status == 2:
        print(f"ins-worker: {document['error']}", file=sys.stderr)
    else:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    return status


def _insi_search(args: argparse.Namespace, settings: Settings) -> int:
    from worker.insi.connectivity import search_once

    status, document = asyncio.run(
        search_once(
            settings,
            birth_name=args.birth_name,
            first_names=tuple(args.first_name),
            sex=args.sex,
            birth_date=args.birth_date,
            birth_place=args.birth_place,
        )
    )
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ins-worker",
        description="INS identity worker: RabbitMQ → INSi → PostgreSQL.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run the worker").set_defaults(func=_run)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument(
        "--create-database",
        action="store_true",
        help="create the database first if it does not exist",
    )
    migrate.set_defaults(func=_migrate)

    simulator = sub.add_parser("simulator", help="run the INSi simulator")
    from worker.simulator import cli as simulator_cli

    simulator_cli.add_arguments(simulator)
    simulator.set_defaults(func=_simulator)

    demo = sub.add_parser(
        "demo", help="run the whole job once on the local servers"
    )
    demo.add_argument("--timeout", type=float, default=90.0)
    demo.set_defaults(func=_demo)

    config = sub.add_parser("config", help="print the settings")
    config.add_argument("--markdown", action="store_true")
    config.set_defaults(func=_config)

    insi = sub.add_parser("insi", help="integrator tools for INSi")
    insi_sub = insi.add_subparsers(dest="insi_command", required=True)
    parse = insi_sub.add_parser("parse", help="parse an INSi XML reply")
    parse.add_argument("file")
    parse.set_defaults(func=_insi_parse)
    search = insi_sub.add_parser(
        "search", help="one traits search against the configured endpoint"
    )
    search.add_argument("--birth-name", required=True)
    search.add_argument("--first-name", required=True, action="append")
    search.add_argument("--sex", required=True)
    search.add_argument("--birth-date", required=True)
    search.add_argument("--birth-place")
    search.set_defaults(func=_insi_search)

    from worker import operator_cli

    operator_cli.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_format, settings.log_level)
        func: Command = args.func
        return func(args, settings)
    except ConfigurationError as exc:
        print(f"ins-worker: configuration error: {exc}", file=sys.stderr)
        return 78
    except InsWorkerError as exc:
        print(f"ins-worker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
