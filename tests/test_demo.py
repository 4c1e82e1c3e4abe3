"""The demo, run as a new user runs it: a subprocess that must exit 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.servers


def test_demo_reports_every_request_and_exits_zero(
    servers: dict[str, str],
) -> None:
    """``ins-worker demo`` gets an outcome for every case and says so."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("INS_WORKER_")
    }
    env["INS_WORKER_AMQP_URL"] = servers["amqp"]
    env["INS_WORKER_DATABASE_URL"] = servers["database"]

    done = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--timeout", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    table = lines[2 : lines.index("")]
    assert len(table) == 11
    assert all("(none)" not in line for line in table)
    assert "all reported" in done.stdout
    text = "\n".join(table)
    for shown in (
        "qualified",
        "retrieved",
        "not_found",
        "ambiguous",
        "mismatch",
        "ins_changed",
        "rejected:douteuse",
        "dead-lettered:not_json",
    ):
        assert shown in text, shown
