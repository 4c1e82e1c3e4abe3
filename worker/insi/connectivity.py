"""``ins-worker insi search``: one traits search, printed as JSON.

The check an integrator runs against the qualification service with
their certificate: the worker's own client, settings and TLS set-up, one
call, no retry, no strategy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.errors import (
    InsiConfigurationFault,
    InsiError,
    InsiRequestFault,
    InsiTransientFault,
)
from worker.insi.factory import make_client
from worker.insi.model import TraitsSearch
from worker.insi.report import fault_to_json, result_to_json
from worker.settings import Settings


async def search_once(
    settings: Settings,
    *,
    birth_name: str,
    first_names: tuple[str, ...],
    sex: str,
    birth_date: str,
    birth_place: str | None,
) -> tuple[int, dict[str, Any]]:
    """(exit status, JSON): 0 for a result, 3 for a fault, 1 otherwise."""
    client, _ = make_client(settings, datetime.now(UTC))
    search = TraitsSearch(
        birth_name, first_names, sex, birth_date, birth_place or None
    )
    try:
        exchange = await client.search(search)
    except (
        InsiTransientFault,
        InsiRequestFault,
        InsiConfigurationFault,
    ) as exc:
        return 3, fault_to_json(exc)
    except InsiError as exc:
        return 1, {"error": str(exc), "kind": exc.kind}
    finally:
        await client.close()
    assert exchange.result is not None
    return 0, {
        **result_to_json(exchange.result),
        "http_status": exchange.http_status,
        "duration_ms": round(exchange.duration_s * 1000, 1),
    }
