"""The AsyncAPI document: AsyncAPI 3, true to the worker, examples valid."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from worker import events, metrics
from worker.intake import parse_request
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
DOCUMENT = SCHEMAS / "asyncapi.yaml"

#: the AsyncAPI Initiative's JSON Schemas, from the npm package
#: @asyncapi/specs that .ci/check-deploy installs beside kustomize
OFFICIAL_SCHEMA = (
    Path(sys.prefix)
    / "deploy-tools"
    / "node_modules"
    / "@asyncapi"
    / "specs"
    / "schemas"
    / "3.0.0.json"
)

REQUEST_ID = "6f1c2e0a-3b7d-4f0e-9a55-2b8f5c1d9e44"

JSON_SCHEMA_2020 = "application/schema+json;version=draft-2020-12"


def _document() -> dict[str, Any]:
    doc = yaml.safe_load(DOCUMENT.read_text("utf-8"))
    assert isinstance(doc, dict)
    return doc


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _local_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            yield ref
        for value in node.values():
            yield from _local_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _local_refs(value)


def _message(doc: dict[str, Any], name: str) -> dict[str, Any]:
    message = doc["components"]["messages"][name]
    assert isinstance(message, dict)
    return message


def _payload_validator(message: dict[str, Any]) -> jsonschema.Validator:
    payload = message["payload"]
    if "schemaFormat" in payload:
        assert payload["schemaFormat"] == JSON_SCHEMA_2020
        schema = json.loads(
            (SCHEMAS / payload["schema"]["$ref"]).read_text("utf-8")
        )
        return jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.FormatChecker()
        )
    # An inline AsyncAPI Schema: a superset of draft-07.
    return jsonschema.Draft7Validator(payload)


def _examples() -> list[Any]:
    doc = _document()
    return [
        pytest.param(name, example, id=f"{name}-{example['name']}")
        for name, message in doc["components"]["messages"].items()
        for example in message.get("examples", [])
    ]


def test_document_is_asyncapi_3_with_send_and_receive_operations() -> None:
    """Version 3.0.0, the worker's three operations on four channels."""
    doc = _document()

    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert set(doc["channels"]) == {
        "requests",
        "requestsQueue",
        "events",
        "deadLetters",
    }
    actions = {
        name: operation["action"]
        for name, operation in doc["operations"].items()
    }
    assert actions == {
        "receiveVerificationRequest": "receive",
        "sendIdentityEvent": "send",
        "sendDeadLetter": "send",
    }


def test_every_local_reference_resolves() -> None:
    """Operations name channels and messages that the document has."""
    doc = _document()

    refs = list(_local_refs(doc))

    assert len(refs) >= 10
    for ref in refs:
        assert _resolve(doc, ref) is not None, ref
    for name, operation in doc["operations"].items():
        channel = _resolve(doc, operation["channel"]["$ref"])
        for message in operation["messages"]:
            prefix = operation["channel"]["$ref"] + "/messages/"
            assert message["$ref"].startswith(prefix), name
            assert (
                _resolve(doc, message["$ref"]) in channel["messages"].values()
            )


def test_payloads_reference_the_json_schemas_of_the_repository() -> None:
    """Requests and events point at the schema files, not copies."""
    doc = _document()

    request = _message(doc, "VerificationRequested")["payload"]
    event = _message(doc, "IdentityEvent")["payload"]

    assert request["schema"]["$ref"] == "./identity-request.v1.schema.json"
    assert event["schema"]["$ref"] == (
        "./events/identity-event.v1.schema.json"
    )
    for payload in (request, event):
        target = SCHEMAS / payload["schema"]["$ref"]
        schema = json.loads(target.read_text("utf-8"))
        assert schema["$schema"].endswith("/draft/2020-12/schema")


def test_document_validates_against_the_official_asyncapi_3_schema() -> None:
    """The AsyncAPI Initiative's own JSON Schema accepts the document."""
    if not OFFICIAL_SCHEMA.is_file():
        pytest.skip(
            f"@asyncapi/specs is not installed at {OFFICIAL_SCHEMA} "
            "(.ci/check-deploy installs it)"
        )
    schema = json.loads(OFFICIAL_SCHEMA.read_text("utf-8"))
    validator = jsonschema.Draft7Validator(schema)

    errors = [
        f"{list(e.absolute_path)}: {e.message[:200]}"
        for e in validator.iter_errors(_document())
    ]

    assert errors == []


def test_official_schema_check_is_not_a_formality() -> None:
    """A 2.x-style operation is refused by the same schema."""
    if not OFFICIAL_SCHEMA.is_file():
        pytest.skip(f"@asyncapi/specs is not installed at {OFFICIAL_SCHEMA}")
    schema = json.loads(OFFICIAL_SCHEMA.read_text("utf-8"))
    doc = _document()
    doc["operations"]["sendIdentityEvent"]["action"] = "publish"

    assert not jsonschema.Draft7Validator(schema).is_valid(doc)


@pytest.mark.parametrize(("message_name", "example"), _examples())
def test_every_example_matches_its_message_schema(
    message_name: str, example: dict[str, Any]
) -> None:
    """Each example's payload (and headers) validate against the schemas."""
    message = _message(_document(), message_name)

    _payload_validator(message).validate(example["payload"])
    if "headers" in message:
        jsonschema.Draft7Validator(message["headers"]).validate(
            example["headers"]
        )


def test_each_message_has_examples() -> None:
    """Every message shows at least one example; events several kinds."""
    doc = _document()

    for name, message in doc["components"]["messages"].items():
        assert message.get("examples"), name
    kinds = {
        e["payload"]["type"]
        for e in _message(doc, "IdentityEvent")["examples"]
    }
    assert len(kinds) >= 4


def test_request_examples_are_accepted_by_the_worker() -> None:
    """The worker's own intake reads every request example."""
    for example in _message(_document(), "VerificationRequested")["examples"]:
        body = json.dumps(example["payload"]).encode()

        request = parse_request(body, Settings().max_body_bytes)

        assert request.request_id == example["payload"]["id"]


def test_event_examples_carry_the_ids_the_worker_derives() -> None:
    """An event's id is the one the worker derives from request and type."""
    for example in _message(_document(), "IdentityEvent")["examples"]:
        payload = example["payload"]
        kind = payload["type"].removeprefix(events.TYPE_PREFIX)

        assert payload["id"] == events.event_id(
            payload["data"]["request_id"], kind
        )


def test_event_channel_lists_every_type_and_its_routing_key() -> None:
    """``identity.{eventType}`` over exactly the worker's event types."""
    doc = _document()
    channel = doc["channels"]["events"]
    parameter = _resolve(doc, channel["parameters"]["eventType"]["$ref"])

    assert channel["address"] == "identity.{eventType}"
    assert tuple(parameter["enum"]) == events.EVENT_TYPES
    for kind in events.EVENT_TYPES:
        built = events.build(
            kind,
            events.Requester(REQUEST_ID, None, None),
            {},
            source="urn:test",
        )
        assert built.routing_key == channel["address"].replace(
            "{eventType}", kind
        )


def test_dead_letter_reasons_are_the_workers() -> None:
    """The reason header lists exactly the reasons the worker counts."""
    headers = _message(_document(), "DeadLetter")["headers"]

    reasons = headers["properties"]["x-ins-reason"]["enum"]

    assert tuple(reasons) == metrics.DEAD_LETTER_REASONS


def test_names_are_those_of_the_default_settings() -> None:
    """Exchanges, queue and routing key as the worker declares them."""
    defaults = Settings()
    channels = _document()["channels"]

    def binding(name: str) -> dict[str, Any]:
        found = channels[name]["bindings"]["amqp"]
        assert isinstance(found, dict)
        return found

    assert binding("requests")["exchange"]["name"] == (
        defaults.requests_exchange
    )
    assert channels["requests"]["address"] == defaults.requests_routing_key
    assert binding("requestsQueue")["queue"]["name"] == (
        defaults.requests_queue
    )
    assert channels["requestsQueue"]["address"] == defaults.requests_queue
    assert binding("events")["exchange"]["name"] == defaults.events_exchange
    assert binding("deadLetters")["exchange"]["name"] == (
        defaults.dead_letter_exchange
    )
