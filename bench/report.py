"""From the runs of a benchmark to its table: medians, ratios, verdicts.

Everything here reads the plain JSON form of the results (what
``--json`` writes), so a table or a plot can be made again from a saved
run without measuring anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.stats import Summary, summarise

Result = Mapping[str, Any]

#: the in-flight limits of the figures the issue names
BASELINE_LIMIT = 64
WORKER_LIMIT = 32
SLOW_MS = 300.0

#: CPU groups shown per 1,000 messages, in order
CPU_GROUPS = (
    ("subject", "process under test"),
    ("broker", "broker (beam.smp)"),
    ("database", "database (bench backends + shared)"),
    ("simulator", "INSi simulator"),
    ("harness", "harness (publish + collect)"),
    ("machine", "whole machine"),
)


def key(setup: Mapping[str, Any]) -> tuple[str, int, float, int]:
    """(kind, limit, latency, processes) of a run's setup."""
    return (
        str(setup["kind"]),
        int(setup["limit"]),
        float(setup["latency_ms"]),
        int(setup["processes"]),
    )


def runs_of(
    results: Result, kind: str, limit: int, latency: float, processes: int = 1
) -> list[Result]:
    """Every repetition of one setup."""
    wanted = (kind, limit, latency, processes)
    return [r for r in results["runs"] if key(r["setup"]) == wanted]


def figure(
    runs: Iterable[Result], value: Callable[[Result], float]
) -> Summary | None:
    """The summary of one value over runs (NaN values left out)."""
    return summarise([value(r) for r in runs])


def ratio_by_repetition(
    top: Sequence[Result], bottom: Sequence[Result]
) -> Summary | None:
    """top / bottom within each repetition, then summarised."""
    by_rep = {r["repetition"]: r["throughput"] for r in bottom}
    return summarise(
        [
            r["throughput"] / by_rep[r["repetition"]]
            for r in top
            if by_rep.get(r["repetition"])
        ]
    )


def show(summary: Summary | None, digits: int = 0) -> str:
    """``median (min-max)``, or a dash."""
    if summary is None:
        return "-"
    if summary.runs == 1:
        return f"{summary.median:.{digits}f}"
    return (
        f"{summary.median:.{digits}f} "
        f"({summary.low:.{digits}f}-{summary.high:.{digits}f})"
    )


def ideal(limit: int, latency_ms: float, processes: int = 1) -> float:
    """The bound ``in-flight limit / latency`` (inf at 0 ms)."""
    if latency_ms <= 0:
        return math.inf
    return processes * limit / (latency_ms / 1000.0)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target of the issue, met or not, and why."""

    target: str
    met: bool | None  # None: not measured
    measured: str


def _met(
    summary: Summary | None, test: Callable[[float], bool]
) -> bool | None:
    return None if summary is None else test(summary.median)


def main_rows(results: Result) -> tuple[list[list[str]], list[Verdict]]:
    """The main table (baseline and worker side by side) and verdicts."""
    base = runs_of(results, "baseline", BASELINE_LIMIT, 0.0)
    work = runs_of(results, "worker", WORKER_LIMIT, 0.0)
    base_slow = runs_of(results, "baseline", WORKER_LIMIT, SLOW_MS)
    work_slow = runs_of(results, "worker", WORKER_LIMIT, SLOW_MS)
    bound = ideal(WORKER_LIMIT, SLOW_MS)

    def half(name: str) -> Callable[[Result], float]:
        return lambda r: float(r["half"][name]) if r.get("half") else math.nan

    ratio = ratio_by_repetition(work, base)
    slow_ratio = summarise([r["throughput"] / bound for r in work_slow])
    metric_p99 = figure(work, half("metric_p99_ms"))
    rss = figure(work, lambda r: r["rss_peak_mb"])
    ready = summarise([s for r in work for s in r["ready_s"]])
    rows = [
        ["throughput at 0 ms, msgs/s",
         show(figure(base, lambda r: r["throughput"])),
         show(figure(work, lambda r: r["throughput"]))],
        ["worker / baseline at 0 ms", "", show(ratio, 2)],
        ["overhead p50 / p99 at half load, ms (worker's histogram)", "",
         f"{show(figure(work, half('metric_p50_ms')), 1)} / "
         f"{show(metric_p99, 1)}"],
        ["overhead p50 / p99 at half load, ms (end to end - INSi)",
         f"{show(figure(base, half('overhead_p50_ms')), 1)} / "
         f"{show(figure(base, half('overhead_p99_ms')), 1)}",
         f"{show(figure(work, half('overhead_p50_ms')), 1)} / "
         f"{show(figure(work, half('overhead_p99_ms')), 1)}"],
        ["RSS, peak, MB", show(figure(base, lambda r: r["rss_peak_mb"])),
         show(rss)],
        ["start to ready (/readyz 200), s", "", show(ready, 2)],
    ]  # fmt: skip
    for group, label in CPU_GROUPS:
        rows.append(
            [
                f"CPU s per 1,000 msgs: {label}",
                show(figure(base, _cpu(group)), 2),
                show(figure(work, _cpu(group)), 2),
            ]
        )
    rows += [
        ["machine busy during the burst, % of all cores",
         show(figure(base, lambda r: 100 * r["machine_busy"])),
         show(figure(work, lambda r: 100 * r["machine_busy"]))],
        ["other processes during the burst, cores (noise)",
         show(figure(base, lambda r: r.get("others_cores", math.nan)), 2),
         show(figure(work, lambda r: r.get("others_cores", math.nan)), 2)],
        [f"throughput at {SLOW_MS:g} ms, in-flight {WORKER_LIMIT}, msgs/s"
         f" (ideal {bound:.1f})",
         show(figure(base_slow, lambda r: r["throughput"]), 1),
         show(figure(work_slow, lambda r: r["throughput"]), 1)],
        [f"worker / ideal at {SLOW_MS:g} ms", "", show(slow_ratio, 3)],
    ]  # fmt: skip
    verdicts = [
        Verdict("throughput >= 0.7 x baseline (0 ms)",
                _met(ratio, lambda v: v >= 0.7), show(ratio, 2)),
        Verdict(f"throughput >= 0.9 x ideal ({SLOW_MS:g} ms)",
                _met(slow_ratio, lambda v: v >= 0.9), show(slow_ratio, 3)),
        Verdict("overhead p99 <= 15 ms at half load",
                _met(metric_p99, lambda v: v <= 15.0),
                f"{show(metric_p99, 1)} ms"),
        Verdict("RSS <= 150 MB", _met(rss, lambda v: v <= 150.0),
                f"{show(rss)} MB"),
        Verdict("ready <= 2 s", _met(ready, lambda v: v <= 2.0),
                f"{show(ready, 2)} s"),
    ]  # fmt: skip
    verdicts.append(rate_verdict(results))
    return rows, verdicts


def _cpu(group: str) -> Callable[[Result], float]:
    return lambda r: float(r["cpu_per_1000"].get(group, math.nan))


def sweep_rows(results: Result, limits: Sequence[int]) -> list[list[str]]:
    """Throughput against the in-flight limit, at 0 ms and 300 ms."""
    rows = []
    for limit in limits:
        b0 = runs_of(results, "baseline", limit, 0.0)
        w0 = runs_of(results, "worker", limit, 0.0)
        b3 = runs_of(results, "baseline", limit, SLOW_MS)
        w3 = runs_of(results, "worker", limit, SLOW_MS)
        bound = ideal(limit, SLOW_MS)
        rows.append(
            [
                str(limit),
                show(figure(b0, lambda r: r["throughput"])),
                show(figure(w0, lambda r: r["throughput"])),
                show(ratio_by_repetition(w0, b0), 2),
                f"{bound:.0f}",
                show(figure(b3, lambda r: r["throughput"])),
                show(figure(w3, lambda r: r["throughput"])),
                show(summarise([r["throughput"] / bound for r in w3]), 2),
            ]
        )
    return rows


def process_rows(results: Result, counts: Sequence[int]) -> list[list[str]]:
    """1, 2, 4 worker processes on one broker."""
    rows = []
    for count in counts:
        fast = runs_of(results, "worker", WORKER_LIMIT, 0.0, count)
        slow = runs_of(results, "worker", WORKER_LIMIT, SLOW_MS, count)
        bound = ideal(WORKER_LIMIT, SLOW_MS, count)
        rows.append(
            [
                str(count),
                show(figure(fast, lambda r: r["throughput"])),
                show(figure(fast, _cpu("subject")), 2),
                show(figure(slow, lambda r: r["throughput"])),
                f"{bound:.0f}",
                show(summarise([r["throughput"] / bound for r in slow]), 2),
            ]
        )
    return rows


def rate_rows(results: Result) -> list[list[str]]:
    """The global rate limit, one row per configured limit."""
    rows = []
    by_limit: dict[tuple[float, int], list[Result]] = {}
    for run in results.get("rate", []):
        group = (run["limit_per_s"], run["processes"])
        by_limit.setdefault(group, []).append(run)
    for (limit, processes), runs in sorted(by_limit.items()):
        measured = figure(runs, lambda r: r["measured_per_s"])
        deviation = summarise(
            [100 * (r["measured_per_s"] / limit - 1) for r in runs]
        )
        failures = sum(
            r["retries"] + r["dead_letters"] + (r["messages"] - r["qualified"])
            for r in runs
        )
        rows.append(
            [
                f"{limit:g}",
                str(processes),
                f"{runs[0]['offered_per_s']:g}",
                show(measured, 1),
                show(deviation, 1),
                show(figure(runs, lambda r: r["window_min_per_s"]), 1)
                + " / "
                + show(figure(runs, lambda r: r["window_max_per_s"]), 1),
                show(figure(runs, lambda r: r["max_queue"])),
                str(failures),
                show(figure(runs, lambda r: r["database_cpu_per_s"]), 2),
            ]
        )
    return rows


def rate_verdict(results: Result) -> Verdict:
    """Every rate-limited run within +/-10 %, nothing failed, queue grew."""
    runs = results.get("rate", [])
    if not runs:
        return Verdict("rate limit within +/-10 % (4 processes)", None, "-")
    within = all(
        abs(r["measured_per_s"] / r["limit_per_s"] - 1) <= 0.10 for r in runs
    )
    clean = all(
        r["complete"]
        and r["qualified"] == r["messages"]
        and r["retries"] == 0
        and r["dead_letters"] == 0
        and r["max_queue"] > 0
        for r in runs
    )
    deviation = summarise(
        [100 * (r["measured_per_s"] / r["limit_per_s"] - 1) for r in runs]
    )
    return Verdict(
        "rate limit within +/-10 % with 4 processes, graceful under overload",
        within and clean,
        f"deviation {show(deviation, 1)} %, "
        f"{'nothing failed' if clean else 'failures or no backlog'}",
    )


def problems(results: Result) -> list[str]:
    """Runs that did not finish cleanly (they make figures suspect)."""
    found = []
    for run in results["runs"]:
        kind, limit, latency, processes = key(run["setup"])
        name = f"{kind} limit={limit} {latency:g} ms x{processes}"
        if not run["complete"]:
            found.append(f"{name}: not every event came back")
        if run["stored"] < run["messages"]:
            found.append(
                f"{name}: {run['stored']} stored of {run['messages']}"
            )
        if any(code != 0 for code in run["exit_codes"]):
            found.append(f"{name}: exit codes {run['exit_codes']}")
    for run in results.get("rate", []):
        if not run["complete"] or any(c != 0 for c in run["exit_codes"]):
            found.append(f"rate limit {run['limit_per_s']:g}/s: unclean")
    return found


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (readable as it is in a terminal)."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(" --- " for _ in header) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(results: Result) -> str:
    """The whole report as text."""
    options = results["options"]
    rows, verdicts = main_rows(results)
    parts = [
        f"runs: {options['runs']} (median, min-max); messages per burst: "
        f"{options['messages']}; rate limit off except in its own table",
        "",
        table(["figure", f"baseline (prefetch {BASELINE_LIMIT})",
               f"worker (concurrency {WORKER_LIMIT})"], rows),
        "",
        table(["in-flight limit", "0 ms baseline", "0 ms worker",
               "worker / baseline", f"{SLOW_MS:g} ms ideal",
               f"{SLOW_MS:g} ms baseline", f"{SLOW_MS:g} ms worker",
               "worker / ideal"],
              sweep_rows(results, options["limits"])),
        "",
        table(["worker processes", "0 ms msgs/s", "CPU s / 1,000 (workers)",
               f"{SLOW_MS:g} ms msgs/s", f"{SLOW_MS:g} ms ideal",
               "worker / ideal"],
              process_rows(results, options["processes"])),
        "",
        table(["limit /s", "processes", "offered /s", "measured /s",
               "deviation %", "1 s windows min / max", "max queue",
               "failed", "database CPU s/s"],
              rate_rows(results)),
        "",
        table(["target", "measured", "verdict"],
              [[v.target, v.measured,
                "-" if v.met is None else ("met" if v.met else "NOT met")]
               for v in verdicts]),
    ]  # fmt: skip
    trouble = problems(results)
    if trouble:
        parts += ["", "problems:", *(f"- {p}" for p in trouble)]
    return "\n".join(parts)
