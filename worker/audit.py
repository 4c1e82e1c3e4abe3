"""The history of one request, for an operator: ``ins-worker audit``.

Gathers the ``requests`` row, its ``request_log`` steps, every INSi
exchange, the identity change and the events it raised. Personal data
(the patient reference, traits, INS, raw XML) is left out unless asked:
``personal`` adds the traits sent per call, the full stored outcome and
the stored identity's INS and traits; ``raw`` adds the XML exchanged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from worker.events import TYPE_PREFIX

if TYPE_CHECKING:
    import asyncpg

#: the parts of a stored outcome free of personal data
_PUBLIC_RESULT_KEYS = ("status", "mismatched", "supplied_ins", "detail")

Report = dict[str, Any]


def parse_request_id(text: str) -> str | None:
    """The canonical form of a request id, ``None`` if not a UUID."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        return None


async def collect(
    conn: asyncpg.Connection[Any],
    request_id: str,
    *,
    personal: bool = False,
    raw: bool = False,
) -> Report | None:
    """The history of ``request_id``; ``None`` when it is unknown.

    ``raw`` is honoured only with ``personal``: raw XML is personal data.
    """
    row = await conn.fetchrow(
        "SELECT * FROM requests WHERE request_id = $1", request_id
    )
    if row is None:
        return None

    report: Report = {"request": _request(row, personal)}
    report["steps"] = [
        {"at": _time(r["at"]), "step": r["step"], "detail": _json(r["detail"])}
        for r in await conn.fetch(
            "SELECT at, step, detail FROM request_log"
            " WHERE request_id = $1 ORDER BY at, id",
            request_id,
        )
    ]
    report["insi_calls"] = [
        _call(r, personal, raw and personal)
        for r in await conn.fetch(
            "SELECT * FROM insi_calls WHERE request_id = $1"
            " ORDER BY started_at, id",
            request_id,
        )
    ]
    report["events"] = [
        {
            "type": TYPE_PREFIX + r["event_type"],
            "id": str(r["event_id"]),
            "routing_key": r["routing_key"],
            "created_at": _time(r["created_at"]),
            "sent": r["sent_at"] is not None,
            "sent_at": _time(r["sent_at"]),
        }
        for r in await conn.fetch(
            "SELECT * FROM outbox WHERE request_id = $1 ORDER BY id",
            request_id,
        )
    ]
    report["identity_changes"] = [
        _change(r, personal)
        for r in await conn.fetch(
            "SELECT * FROM identity_changes WHERE request_id = $1 ORDER BY id",
            request_id,
        )
    ]
    report["identity"] = await _identity(conn, row, personal)
    return report


def _request(row: asyncpg.Record, personal: bool) -> Report:
    result = _json(row["result"]) or {}
    out: Report = {
        "request_id": str(row["request_id"]),
        "source": row["source"],
        "correlation_id": row["correlation_id"],
        "state": row["state"],
        "deliveries": row["deliveries"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "received_at": _time(row["received_at"]),
        "updated_at": _time(row["updated_at"]),
        "completed_at": _time(row["completed_at"]),
        "result": {k: result[k] for k in _PUBLIC_RESULT_KEYS if k in result},
    }
    if personal:
        out["patient_ref"] = row["patient_ref"]
        out["result"] = result
    return out


def _call(row: asyncpg.Record, personal: bool, raw: bool) -> Report:
    out: Report = {
        "started_at": _time(row["started_at"]),
        "delivery": row["delivery"],
        "operation": row["operation"],
        "message_id": row["message_id"],
        "correlation_id": row["correlation_id"],
        "duration_ms": round(float(row["duration_ms"]), 1),
        "http_status": row["http_status"],
        "cr_code": row["cr_code"],
        "error_kind": row["error_kind"],
        "fault_code": row["fault_code"],
        "certificate": row["certificate"],
        "raw_purged_at": _time(row["raw_purged_at"]),
    }
    if personal:
        out["traits_sent"] = _json(row["search"])
    if raw:
        out["request_xml"] = _xml(row["request_xml"])
        out["response_xml"] = _xml(row["response_xml"])
    return out


def _change(row: asyncpg.Record, personal: bool) -> Report:
    out: Report = {
        "changed_at": _time(row["changed_at"]),
        "old_status": row["old_status"],
        "new_status": row["new_status"],
        "changes": list(row["changes"]),
    }
    if personal:
        out["old_ins"] = row["old_ins"]
        out["new_ins"] = row["new_ins"]
    return out


async def _identity(
    conn: asyncpg.Connection[Any],
    request: asyncpg.Record,
    personal: bool,
) -> Report | None:
    if request["source"] is None or request["patient_ref"] is None:
        return None
    row = await conn.fetchrow(
        "SELECT * FROM identities WHERE source = $1 AND patient_ref = $2",
        request["source"],
        request["patient_ref"],
    )
    if row is None:
        return None

    out: Report = {
        "status": row["status"],
        "version": row["version"],
        "updated_at": _time(row["updated_at"]),
        "last_changed_by_this_request": (
            row["last_request_id"] == request["request_id"]
        ),
        "document_type": row["document_type"],
    }
    if personal:
        out.update(
            ins=row["ins"],
            oid=row["oid"],
            ins_type=row["ins_type"],
            history=_json(row["history"]),
            traits=_json(row["traits"]),
            document_checked_at=(
                None
                if row["document_checked_at"] is None
                else row["document_checked_at"].isoformat()
            ),
            insi_called_at=_time(row["insi_called_at"]),
        )
    return out


def _json(value: Any) -> Any:
    # A connection without the pool's jsonb codec hands back text.
    return json.loads(value) if isinstance(value, str) else value


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _xml(value: bytes | None) -> str | None:
    if value is None:
        return None
    # As exchanged: UTF-8; anything else shows escaped, never lost.
    return bytes(value).decode("utf-8", errors="backslashreplace")


def render_json(report: Report) -> str:
    """The report as indented JSON."""
    return json.dumps(report, indent=2, ensure_ascii=False)


def render_text(report: Report) -> str:
    """The report for a terminal."""
    lines: list[str] = []
    req = report["request"]
    lines.append(f"request {req['request_id']}")
    lines += _fields(
        req,
        (
            "state",
            "outcome",
            "reason",
            "deliveries",
            "source",
            "patient_ref",
            "correlation_id",
            "received_at",
            "completed_at",
        ),
    )
    for key, value in (req.get("result") or {}).items():
        lines.append(f"  {'result.' + key:<18} {_show(value)}")

    lines.append(f"steps ({len(report['steps'])})")
    for step in report["steps"]:
        lines.append(
            f"  {step['at']}  {step['step']:<14} {_show(step['detail'])}"
        )

    lines.append(f"INSi calls ({len(report['insi_calls'])})")
    for n, call in enumerate(report["insi_calls"], 1):
        lines += _call_lines(n, call)

    lines.append(f"events ({len(report['events'])})")
    for event in report["events"]:
        sent = f"sent {event['sent_at']}" if event["sent"] else "NOT SENT"
        lines.append(f"  {event['type']:<28} {event['id']}  {sent}")

    lines.append(f"identity changes ({len(report['identity_changes'])})")
    for change in report["identity_changes"]:
        move = f"{change['old_status'] or '-'} -> {change['new_status']}"
        lines.append(
            f"  {change['changed_at']}  {move:<14}"
            f" {', '.join(change['changes'])}"
        )
        if "new_ins" in change:
            lines.append(
                f"    ins {change['old_ins'] or '-'} -> "
                f"{change['new_ins'] or '-'}"
            )

    identity = report["identity"]
    lines.append("identity" + ("" if identity else " (none stored)"))
    if identity:
        lines += _fields(identity, tuple(identity))
    return "\n".join(lines)


def _call_lines(n: int, call: Mapping[str, Any]) -> list[str]:
    result = call["cr_code"] and f"CodeCR {call['cr_code']}"
    if call["fault_code"] or call["error_kind"]:
        result = (
            f"{call['error_kind'] or 'error'} {call['fault_code'] or ''}"
        ).strip()
    lines = [
        f"  #{n} {call['started_at']}  {call['operation']}"
        f"  delivery {call['delivery']}",
        f"     message id {call['message_id']}",
        f"     {call['duration_ms']} ms  HTTP {call['http_status'] or '-'}"
        f"  {result or 'no result'}",
        f"     certificate {call['certificate'] or '-'}",
    ]
    if call["raw_purged_at"]:
        lines.append(f"     raw XML purged {call['raw_purged_at']}")
    if "traits_sent" in call:
        lines.append(f"     traits sent {_show(call['traits_sent'])}")
    for key in ("request_xml", "response_xml"):
        if key in call:
            lines.append(f"     --- {key}")
            lines += [f"     {x}" for x in (call[key] or "-").splitlines()]
    return lines


def _fields(data: Mapping[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [
        f"  {key:<18} {_show(data[key])}"
        for key in keys
        if key in data and key != "result"
    ]


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)
