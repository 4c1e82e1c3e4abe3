"""``ins-worker insi parse``: exit statuses and JSON for every kit file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.insi.reply import parse_reply
from worker.insi.report import parse_file, result_to_json

from .support import expected, kit_files

TRAIT_FIELDS = {
    "birth_name": "NomNaissance",
    "sex": "Sexe",
    "birth_date": "DateNaissance",
    "birth_place": "LieuNaissance",
}


@pytest.mark.parametrize("name", kit_files("responses", "faults"))
def test_kit_file_report_matches_expected(insi_kit: Path, name: str) -> None:
    """0 and the result, or 3 and the fault, as expected.json says."""
    want = expected(insi_kit)[name.rsplit("/", 1)[-1]]

    status, report = parse_file(insi_kit / name)

    json.dumps(report)
    if want["kind"] == "fault":
        assert status == 3
        fault = report["fault"]
        for field in (
            "code", "subcode", "detail_code", "severity", "message_id",
            "retryable",
        ):
            assert fault[field] == want[field], field
        return

    assert status == 0
    assert report["cr_code"] == want["cr_code"]
    assert report["cr_label"] == want["cr_label"]
    assert report["active"] == want.get("active")
    assert report["history"] == want.get("history", [])
    if "traits" not in want:
        assert report["traits"] is None
        return
    traits: dict[str, Any] = report["traits"]
    for ours, theirs in TRAIT_FIELDS.items():
        assert traits[ours] == want["traits"][theirs], ours
    assert traits["first_names"] == want["traits"]["first_names"]
    assert traits["first_name"] == want["traits"]["first_name"]


@pytest.mark.parametrize(
    "content",
    [
        b"hello, not XML",
        b"<html><body>502</body></html>",
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        b"",
    ],
)
def test_non_insi_file_exits_2_with_one_line(
    tmp_path: Path, content: bytes
) -> None:
    """Anything but an INSi reply: status 2 and a one-line reason."""
    path = tmp_path / "other.xml"
    path.write_bytes(content)

    status, report = parse_file(path)

    assert status == 2
    assert list(report) == ["error"]
    assert report["error"] and "\n" not in report["error"]


def test_kit_request_is_not_a_reply(insi_kit: Path) -> None:
    """The accepted request is INSi traffic but not a reply: status 2."""
    name = "accepted-rechercherInsAvecTraitsIdentite.xml"

    status, report = parse_file(insi_kit / "requests" / name)

    assert status == 2
    assert "RESULTAT" in report["error"]


def test_missing_file_exits_2(tmp_path: Path) -> None:
    """A path that cannot be read: status 2, reason says so."""
    status, report = parse_file(tmp_path / "absent.xml")

    assert status == 2
    assert "cannot read" in report["error"]


def test_result_to_json_keeps_ins_and_key_check(insi_kit: Path) -> None:
    """The shared rendering: 15-character INS and the key check."""
    body = (insi_kit / "responses" / "cnda-TEST_2.08_cas1.xml").read_bytes()

    rendered = result_to_json(parse_reply(body))

    active = rendered["active"]
    assert active["ins"] == active["nir13"] + active["key"]
    assert len(active["ins"]) == 15
    assert [h["ins"] for h in rendered["history"]] == [active["ins"]]
