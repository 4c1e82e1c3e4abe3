"""Medians, percentiles and Prometheus histogram quantiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class Summary:
    """The median of several runs, with their spread."""

    median: float
    low: float
    high: float
    runs: int

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the runs were."""
        return (self.high - self.low) / self.median if self.median else 0.0


def summarise(values: Sequence[float]) -> Summary | None:
    """Median and min-max of ``values`` (None when there are none)."""
    kept = [v for v in values if not math.isnan(v)]
    if not kept:
        return None
    return Summary(statistics.median(kept), min(kept), max(kept), len(kept))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    weight = position - below
    return ordered[below] * (1 - weight) + ordered[above] * weight


Buckets = list[tuple[float, float]]


def histogram(text: str, name: str) -> Buckets:
    """Cumulative (upper bound, count) pairs of one histogram, in order."""
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        pairs = [
            (float(s.labels["le"]), s.value)
            for s in family.samples
            if s.name.endswith("_bucket")
        ]
        return sorted(pairs)
    return []


def counter(text: str, name: str) -> float:
    """The sum of every sample of a counter (all labels together)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == name.removesuffix("_total"):
            total += sum(
                s.value for s in family.samples if s.name.endswith("_total")
            )
    return total


def difference(after: Buckets, before: Buckets) -> Buckets:
    """Buckets filled between two scrapes of the same histogram."""
    earlier: Mapping[float, float] = dict(before)
    return [(le, count - earlier.get(le, 0.0)) for le, count in after]


def add(left: Buckets, right: Buckets) -> Buckets:
    """Two histograms of the same buckets, counted together."""
    if not left:
        return list(right)
    other: Mapping[float, float] = dict(right)
    return [(le, count + other.get(le, 0.0)) for le, count in left]


def histogram_quantile(buckets: Buckets, q: float) -> float:
    """The ``q`` quantile, interpolated inside its bucket as Prometheus does.

    A quantile in the ``+Inf`` bucket is reported as the last finite
    bound (the histogram cannot say more).
    """
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside else 0.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound
