"""Read a delivery's body into a :class:`VerificationRequest`, or refuse it.

The JSON Schema in ``schemas/`` is the contract. Error messages name the
failing field and the schema keyword, never the value: a value may be a
patient's name.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema

from worker.domain.request import (
    DeskTraits,
    DocumentCheck,
    SuppliedIns,
    VerificationRequest,
)
from worker.errors import MessageRejected
from worker.paths import SCHEMAS

REQUEST_TYPE_PREFIX = "fr.ins.identity.verification.requested."
SUPPORTED_VERSIONS = {"v1": "identity-request.v1.schema.json"}

_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def _load(schema_file: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (Path(SCHEMAS) / schema_file).read_text("utf-8")
    )
    return schema


@cache
def _validator(schema_file: str) -> jsonschema.Draft202012Validator:
    schema = _load(schema_file)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@cache
def _fast(schema_file: str) -> Any:
    # The schema uses only draft-07 keywords; fastjsonschema compiles it
    # to plain Python, about ten times faster than jsonschema on the
    # common case of a valid request. jsonschema stays the judge of a
    # refusal and the source of its wording.
    schema = dict(_load(schema_file))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fastjsonschema.compile(schema, formats={"date-time": r".+"})


def _errors(schema_file: str, document: Any) -> list[Any]:
    try:
        _fast(schema_file)(document)
    except fastjsonschema.JsonSchemaException:
        return sorted(
            _validator(schema_file).iter_errors(document),
            key=lambda e: (list(e.absolute_path), e.validator),
        )
    return []


def readable_request_id(document: Any) -> str | None:
    """The request id of a decoded body, if it has a well-formed one."""
    if isinstance(document, dict):
        value = document.get("id")
        if isinstance(value, str) and _UUID.match(value):
            return value.lower()
    return None


def parse_request(body: bytes, max_bytes: int) -> VerificationRequest:
    """Decode, validate and convert one request body."""
    if len(body) > max_bytes:
        raise MessageRejected(
            "too_large", f"body of {len(body)} bytes exceeds {max_bytes}"
        )

    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack, which a
        # body of a few kilobytes of brackets reaches.
        raise MessageRejected("not_json", "body is not UTF-8 JSON") from None

    request_id = readable_request_id(document)
    schema_file = _schema_for(document, request_id)
    errors = _errors(schema_file, document)
    if errors:
        raise MessageRejected(
            "schema_invalid", _describe(errors), request_id=request_id
        )

    return _to_request(document)


def _schema_for(document: Any, request_id: str | None) -> str:
    kind = document.get("type") if isinstance(document, dict) else None
    if not isinstance(kind, str) or not kind.startswith(REQUEST_TYPE_PREFIX):
        raise MessageRejected(
            "unknown_type",
            f"type must be {REQUEST_TYPE_PREFIX}<version>",
            request_id=request_id,
        )
    version = kind.removeprefix(REQUEST_TYPE_PREFIX)
    if version not in SUPPORTED_VERSIONS:
        raise MessageRejected(
            "unsupported_version",
            "this request version is not supported; "
            f"supported: {', '.join(sorted(SUPPORTED_VERSIONS))}",
            request_id=request_id,
        )
    return SUPPORTED_VERSIONS[version]


def _describe(errors: list[jsonschema.ValidationError]) -> str:
    # Field path and keyword only: the offending value may be personal.
    parts = []
    for error in errors[:5]:
        path = "$" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}"
            for p in error.absolute_path
        )
        if error.validator == "required":
            missing = error.message.split("'")[1]
            parts.append(f"{path}.{missing}: required")
        elif error.validator == "additionalProperties":
            parts.append(f"{path}: unexpected property")
        else:
            parts.append(f"{path}: {error.validator}")
    more = len(errors) - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _to_request(document: dict[str, Any]) -> VerificationRequest:
    data = document["data"]
    traits = data["traits"]
    ins = data.get("ins")
    document_check = data.get("document")
    return VerificationRequest(
        request_id=document["id"].lower(),
        source=document["source"],
        patient_ref=document["subject"],
        correlation_id=document.get("correlationid"),
        requested_at=document.get("time"),
        traits=DeskTraits(
            birth_name=traits["birth_name"],
            first_names=tuple(traits["first_names"]),
            sex=traits["sex"],
            birth_date=traits["birth_date"],
            birth_place=traits.get("birth_place"),
            birth_date_corrected=traits.get("birth_date_corrected", False),
        ),
        ins=SuppliedIns(ins["value"], ins["oid"]) if ins else None,
        document=(
            DocumentCheck(document_check["type"], document_check["checked_at"])
            if document_check
            else None
        ),
        attributes=frozenset(data.get("attributes", ())),
    )
