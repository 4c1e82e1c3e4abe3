"""The operator's subcommands of ``ins-worker``: audit, purge, dlq.

``add_commands`` registers them on the main parser's subparsers; each
handler takes the parsed arguments and the settings and returns the
exit status (0 done, 1 refused or failed, 2 wrong usage). ``audit`` and
``purge`` connect as the schema owner (``INS_WORKER_MIGRATE_DATABASE_URL``,
else ``INS_WORKER_DATABASE_URL``), ``dlq`` with ``INS_WORKER_AMQP_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg

from worker import audit, dlq, retention
from worker.errors import StoreUnavailable
from worker.settings import Settings
from worker.store.pool import UNAVAILABLE


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Register ``audit``, ``purge`` and ``dlq`` on ``sub``."""
    _add_audit(sub)
    _add_purge(sub)
    _add_dlq(sub)


def _add_audit(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "audit",
        help="print the history of one request",
        description="Print what happened to one request: its state, "
        "steps, INSi calls and events. Personal data only on request.",
    )
    command.add_argument("request_id", metavar="REQUEST_ID")
    command.add_argument("--json", action="store_true", help="print JSON")
    command.add_argument(
        "--show-personal-data",
        action="store_true",
        help="also the patient reference, the traits sent to INSi, the "
        "stored outcome and the identity's INS and traits",
    )
    command.add_argument(
        "--raw",
        action="store_true",
        help="also the raw XML of each INSi call (needs --show-personal-data)",
    )
    command.set_defaults(func=run_audit)


def _add_purge(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "purge",
        help="apply the retention period",
        description="Drop the raw XML of INSi calls and delete the sent "
        "events older than the retention period.",
    )
    command.add_argument(
        "--older-than",
        type=_duration,
        metavar="DURATION",
        help="365d, 12h, 30m... (default: INS_WORKER_RAW_RETENTION_DAYS)",
    )
    command.add_argument(
        "--dry-run", action="store_true", help="only count what would go"
    )
    command.add_argument(
        "--batch-size",
        type=_positive,
        default=retention.DEFAULT_BATCH_SIZE,
        help="rows per transaction",
    )
    command.add_argument("--json", action="store_true", help="print JSON")
    command.set_defaults(func=run_purge)


def _add_dlq(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser("dlq", help="inspect or replay dead letters")
    dlq_sub = command.add_subparsers(dest="dlq_command", required=True)

    listing = dlq_sub.add_parser(
        "list",
        help="show dead letters (the queue is left as it is)",
    )
    _selection_arguments(listing)
    listing.add_argument(
        "--show-body",
        action="store_true",
        help="also print each body (personal data)",
    )
    listing.set_defaults(func=run_dlq_list)

    replay = dlq_sub.add_parser(
        "replay",
        help="send dead letters back to the requests exchange",
    )
    _selection_arguments(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="only show what would go"
    )
    replay.set_defaults(func=run_dlq_replay)


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason", help="only this reason (x-ins-reason or x-death's)"
    )
    parser.add_argument(
        "--request-id", help="only this request (body id or message id)"
    )
    parser.add_argument(
        "--limit", type=_positive, help="at most this many messages"
    )
    parser.add_argument(
        "--scan-max",
        type=_positive,
        default=dlq.DEFAULT_SCAN,
        help=f"messages examined at most (up to {dlq.MAX_SCAN})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def _duration(text: str) -> timedelta:
    try:
        return retention.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def _refuse(command: str, message: str, status: int = 1) -> int:
    print(f"ins-worker {command}: {message}", file=sys.stderr)
    return status


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Any]:
    # The schema owner's URL: the worker's own role may only append to
    # the audit trail, never read it back nor purge it.
    try:
        conn = await asyncpg.connect(
            settings.migration_url,
            timeout=10,
            server_settings={
                "application_name": "ins-worker operator",
                "statement_timeout": "60000",
            },
        )
    except UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"cannot reach PostgreSQL ({type(exc).__name__})"
        ) from exc
    try:
        await conn.set_type_codec(
            "jsonb",
            encoder=json.dumps,
            decoder=json.loads,
            schema="pg_catalog",
        )
        yield conn
    finally:
        await conn.close()


def run_audit(args: argparse.Namespace, settings: Settings) -> int:
    """``ins-worker audit REQUEST_ID``."""
    if args.raw and not args.show_personal_data:
        return _refuse(
            "audit", "--raw shows personal data: add --show-personal-data", 2
        )
    request_id = audit.parse_request_id(args.request_id)
    if request_id is None:
        return _refuse("audit", "not a request id (a UUID is expected)")

    async def go() -> audit.Report | None:
        async with _database(settings) as conn:
            return await audit.collect(
                conn,
                request_id,
                personal=args.show_personal_data,
                raw=args.raw,
            )

    report = asyncio.run(go())
    if report is None:
        return _refuse("audit", f"no request {request_id} is stored")
    render = audit.render_json if args.json else audit.render_text
    print(render(report))
    return 0


def run_purge(args: argparse.Namespace, settings: Settings) -> int:
    """``ins-worker purge``."""
    older_than = args.older_than or timedelta(days=settings.raw_retention_days)
    if older_than <= timedelta(0):
        return _refuse("purge", "the retention period must be positive")

    async def go() -> retention.PurgeReport:
        async with _database(settings) as conn:
            return await retention.purge(
                conn,
                older_than,
                dry_run=args.dry_run,
                batch_size=args.batch_size,
            )

    try:
        report = asyncio.run(go())
    except asyncpg.UndefinedColumnError:
        return _refuse("purge", "the schema is old: run ins-worker migrate")
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    verb = "would be" if report.dry_run else "were"
    period = retention.format_duration(older_than)
    print(f"retention {period}: before {report.cutoff.isoformat()}")
    print(f"  raw INSi exchanges {verb} purged: {report.raw_exchanges}")
    print(f"  sent events {verb} deleted: {report.sent_events}")
    return 0


def run_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    """``ins-worker dlq list``."""
    scan = asyncio.run(
        dlq.list_dead_letters(
            settings, _selection(args), scan_max=args.scan_max
        )
    )
    _print_scan(scan, args, "shown")
    return 0


def run_dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    """``ins-worker dlq replay``."""
    scan = asyncio.run(
        dlq.replay_dead_letters(
            settings,
            _selection(args),
            dry_run=args.dry_run,
            scan_max=args.scan_max,
        )
    )
    _print_scan(scan, args, "would be replayed" if args.dry_run else "")
    if scan.error is not None:
        return _refuse("dlq replay", scan.error)
    return 0


def _selection(args: argparse.Namespace) -> dlq.Selection:
    return dlq.Selection(
        reason=args.reason, request_id=args.request_id, limit=args.limit
    )


def _print_scan(scan: dlq.Scan, args: argparse.Namespace, verb: str) -> None:
    show_body = bool(getattr(args, "show_body", False))
    if args.json:
        print(json.dumps(scan.as_dict(show_body), indent=2))
        return

    head = (
        f"{scan.queue}: {scan.ready} ready, {scan.examined} examined, "
        f"{len(scan.selected)} selected"
    )
    if verb == "":
        head += f", {scan.replayed} replayed"
    elif verb != "shown":
        head += f" ({verb})"
    print(head)
    for letter in scan.selected:
        print(_letter_line(letter))
        if letter.detail:
            print(f"      detail {letter.detail}")
        if show_body:
            print("      body " + letter.as_dict(True)["body"])


def _letter_line(letter: dlq.DeadLetter) -> str:
    death = "-"
    if letter.death_reason:
        death = f"{letter.death_reason} x{letter.death_count or 1}"
        if letter.death_queue:
            death += f" from {letter.death_queue}"
    return (
        f"  #{letter.position:<4} request {letter.request_id or '-'}"
        f"  message {letter.message_id or '-'}"
        f"  reason {letter.reason or '-'}  x-death {death}"
        f"  dlq-deliveries {letter.delivery_count or 0}"
        f"  {letter.size} B"
    )
