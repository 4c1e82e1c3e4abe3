"""The request contract: what is accepted, and how a refusal reads."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.errors import MessageRejected
from worker.intake import (
    SUPPORTED_VERSIONS,
    _errors,
    _validator,
    parse_request,
)

LIMIT = 65536


def request(**changes: Any) -> dict[str, Any]:
    """A valid request, with top-level fields replaced."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "type": "fr.ins.identity.verification.requested.v1",
        "source": "urn:example:pas:hospital-a",
        "id": str(uuid.uuid4()),
        "subject": "ipp/000123456",
        "correlationid": "corr-1",
        "data": {
            "traits": {
                "birth_name": "Écetinsi",
                "first_names": ["Pierre-Alain", "Muriel"],
                "sex": "M",
                "birth_date": "2009-07-14",
                "birth_place": "63220",
            },
            "document": {"type": "CN", "checked_at": "2026-12-04"},
        },
    }
    body.update(changes)
    return body


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def test_valid_request_becomes_a_verification_request() -> None:
    """Every field of a valid request reaches the domain object as sent."""
    body = request()

    parsed = parse_request(encode(body), LIMIT)

    assert parsed.request_id == body["id"]
    assert parsed.source == "urn:example:pas:hospital-a"
    assert parsed.patient_ref == "ipp/000123456"
    assert parsed.correlation_id == "corr-1"
    assert parsed.traits.birth_name == "Écetinsi"
    assert parsed.traits.first_names == ("Pierre-Alain", "Muriel")
    assert parsed.traits.birth_place == "63220"
    assert parsed.document is not None and parsed.document.type == "CN"
    assert parsed.ins is None
    assert parsed.attributes == frozenset()


def test_body_that_is_not_json_is_rejected_as_not_json() -> None:
    """Garbage is refused with the ``not_json`` reason and no id."""
    with pytest.raises(MessageRejected) as caught:
        parse_request(b"\x00\xffnot json", LIMIT)

    assert caught.value.reason == "not_json"
    assert caught.value.request_id is None


def test_oversized_body_is_rejected_before_it_is_read() -> None:
    """A body over the limit is refused as ``too_large``."""
    with pytest.raises(MessageRejected) as caught:
        parse_request(b" " * (LIMIT + 1), LIMIT)

    assert caught.value.reason == "too_large"


def test_unknown_version_is_rejected_with_the_supported_list() -> None:
    """A v2 request names the versions this worker supports."""
    body = request(type="fr.ins.identity.verification.requested.v2")

    with pytest.raises(MessageRejected) as caught:
        parse_request(encode(body), LIMIT)

    assert caught.value.reason == "unsupported_version"
    assert "v1" in caught.value.detail
    assert caught.value.request_id == body["id"]


def test_other_event_type_is_rejected_as_unknown_type() -> None:
    """A message that is not a verification request is not guessed at."""
    with pytest.raises(MessageRejected) as caught:
        parse_request(encode(request(type="com.example.other")), LIMIT)

    assert caught.value.reason == "unknown_type"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("data", "traits", "birth_name"), "X" * 101, "birth_name: maxLength"),
        (
            ("data", "traits", "birth_date"),
            "14/07/2009",
            "birth_date: pattern",
        ),
        (("data", "traits", "first_names"), [], "first_names: minItems"),
        (("data", "attributes"), ["suspect"], "attributes[0]: enum"),
        (("data", "ins", "value"), "1234", "ins: required"),
    ],
)
def test_schema_errors_name_the_field_and_rule(
    path: tuple[str, ...], value: Any, expected: str
) -> None:
    """A schema refusal says which field broke which rule."""
    body = request()
    target = body
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value

    with pytest.raises(MessageRejected) as caught:
        parse_request(encode(body), LIMIT)

    assert caught.value.reason == "schema_invalid"
    assert expected.split(":")[0] in caught.value.detail
    assert caught.value.request_id == body["id"]


def test_schema_errors_never_quote_the_offending_value() -> None:
    """A patient's name that breaks a rule is not echoed in the error."""
    body = request()
    body["data"]["traits"]["birth_name"] = "DUPONTDUPONT" * 10
    body["data"]["traits"]["birth_date"] = "le 14 juillet"

    with pytest.raises(MessageRejected) as caught:
        parse_request(encode(body), LIMIT)

    assert "DUPONT" not in str(caught.value)
    assert "juillet" not in str(caught.value)


def test_unexpected_property_is_refused() -> None:
    """The contract is strict: an unknown field is an error, not ignored."""
    body = request(extra="value")

    with pytest.raises(MessageRejected) as caught:
        parse_request(encode(body), LIMIT)

    assert "unexpected property" in caught.value.detail


def test_request_id_must_be_a_uuid() -> None:
    """The idempotency key is a UUID; anything else is refused, id unread."""
    with pytest.raises(MessageRejected) as caught:
        parse_request(encode(request(id="42")), LIMIT)

    assert caught.value.reason == "schema_invalid"
    assert caught.value.request_id is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(
        [
            ("id",),
            ("source",),
            ("subject",),
            ("time",),
            ("correlationid",),
            ("data",),
            ("data", "traits"),
            ("data", "traits", "first_names"),
            ("data", "traits", "sex"),
            ("data", "traits", "birth_date"),
            ("data", "document"),
            ("data", "ins"),
            ("data", "attributes"),
            ("data", "extra"),
        ]
    ),
    value=json_values,
)
def test_fast_and_reference_validators_agree(
    path: tuple[str, ...], value: Any
) -> None:
    """The compiled validator accepts exactly what jsonschema accepts."""
    body = request()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    name = SUPPORTED_VERSIONS["v1"]

    reference_ok = not list(_validator(name).iter_errors(body))
    fast_ok = not _errors(name, body)

    assert fast_ok == reference_ok


def test_deeply_nested_json_is_rejected_as_not_json() -> None:
    """Nesting past the parser's stack is garbage, not a crash."""
    with pytest.raises(MessageRejected) as caught:
        parse_request(b"[" * 5000 + b"]" * 5000, LIMIT)

    assert caught.value.reason == "not_json"
