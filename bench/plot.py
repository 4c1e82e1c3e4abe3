"""The PNG of the report: throughput against the in-flight limit.

Optional: it needs matplotlib, which the worker does not. ``python -m
bench.plot RESULTS.json OUT.png`` draws it again from a saved run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.report import SLOW_MS, Result, figure, ideal, runs_of


def draw(results: Result, path: Path) -> None:
    """Two panels (INSi at 0 ms and 300 ms), baseline and worker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limits = list(results["options"]["limits"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, latency in zip(axes, (0.0, SLOW_MS), strict=True):
        for kind, marker in (("baseline", "s"), ("worker", "o")):
            shown, medians, below, above = [], [], [], []
            for limit in limits:
                found = figure(
                    runs_of(results, kind, limit, latency),
                    lambda r: r["throughput"],
                )
                if found is None:
                    continue
                shown.append(limit)
                medians.append(found.median)
                below.append(found.median - found.low)
                above.append(found.high - found.median)
            axis.errorbar(
                shown, medians, yerr=[below, above], marker=marker,
                capsize=3, label=kind,
            )  # fmt: skip
        if latency > 0:
            axis.plot(
                limits, [ideal(n, latency) for n in limits], "k--",
                linewidth=1, label="ideal: limit / 0.3 s",
            )  # fmt: skip
        axis.set_ylim(bottom=0)
        axis.set_xscale("log", base=2)
        axis.set_xticks(limits, [str(n) for n in limits])
        axis.set_xlabel("in-flight limit (baseline prefetch, worker"
                        " concurrency)")  # fmt: skip
        axis.set_ylabel("end-to-end throughput, msgs/s")
        axis.set_title(f"INSi simulator answering in {latency:g} ms")
        axis.grid(True, alpha=0.3)
        axis.legend()
    fig.suptitle(f"median of {results['options']['runs']} runs, bars: min-max")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Redraw from a results file."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.plot RESULTS.json OUT.png")
        return 2
    draw(json.loads(Path(args[0]).read_text()), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
