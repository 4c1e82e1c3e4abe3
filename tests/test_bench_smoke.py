"""The benchmark harness still runs end to end (a few messages, no timing).

``python -m bench.run --smoke`` goes through every phase with a handful
of requests on the real servers; what it measures is meaningless at that
size, so only completeness is checked here, never a figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[1]
#: a database of its own: a real benchmark may be using ``ins_worker_bench``
SMOKE_DATABASE = "postgresql://postgres@127.0.0.1:5432/ins_worker_bench_smoke"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One smoke run of the harness: its exit status, output and results."""
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--smoke",
            "--patience-s",
            "0",
            "--out",
            str(out),
            "--database-url",
            SMOKE_DATABASE,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    results_file = out / "results.json"
    results = (
        json.loads(results_file.read_text()) if results_file.exists() else {}
    )
    return {"done": done, "results": results}


def test_smoke_run_exits_cleanly_and_writes_results(
    smoke: dict[str, Any],
) -> None:
    """The command exits 0 and leaves its results file."""
    done = smoke["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert smoke["results"]["runs"]


def test_every_planned_measurement_completed(smoke: dict[str, Any]) -> None:
    """Baseline, worker, 300 ms and 1/2/4 processes: all events came back."""
    runs = smoke["results"]["runs"]
    seen = {
        (
            r["setup"]["kind"],
            r["setup"]["limit"],
            r["setup"]["latency_ms"],
            r["setup"]["processes"],
        )
        for r in runs
    }
    wanted = {
        ("baseline", 64, 0.0, 1),
        ("worker", 32, 0.0, 1),
        ("baseline", 32, 300.0, 1),
        ("worker", 32, 300.0, 1),
        *(("worker", 32, latency, n) for latency in (0.0, 300.0)
          for n in (1, 2, 4)),
    }  # fmt: skip
    assert wanted <= seen
    for run in runs:
        assert run["complete"], run["setup"]
        assert run["stored"] >= run["messages"], run["setup"]
        assert run["exit_codes"] and set(run["exit_codes"]) == {0}


def test_half_load_and_rate_limit_phases_produced_figures(
    smoke: dict[str, Any],
) -> None:
    """The latency phase and the rate-limit phase each left a record."""
    results = smoke["results"]
    halves = [r["half"] for r in results["runs"] if r.get("half")]
    kinds = {r["setup"]["kind"] for r in results["runs"] if r.get("half")}
    assert kinds == {"baseline", "worker"}
    assert all(h["complete"] for h in halves)
    [rated] = results["rate"]
    assert rated["complete"]
    assert rated["processes"] == 4
    assert rated["qualified"] == rated["messages"]


def test_report_prints_every_table_and_target(smoke: dict[str, Any]) -> None:
    """The printed report has the main rows, the sweeps and each target."""
    text = smoke["done"].stdout
    for row in (
        "throughput at 0 ms",
        "worker / baseline at 0 ms",
        "overhead p50 / p99 at half load",
        "RSS, peak",
        "start to ready",
        "CPU s per 1,000 msgs: broker",
        "CPU s per 1,000 msgs: database",
        "throughput at 300 ms",
        "| in-flight limit |",
        "| worker processes |",
        "| limit /s |",
        "throughput >= 0.7 x baseline",
        "throughput >= 0.9 x ideal",
        "overhead p99 <= 15 ms",
        "RSS <= 150 MB",
        "ready <= 2 s",
        "rate limit within +/-10 %",
    ):
        assert row in text, row
