"""An experiment over time: per-variant traffic, errors, p99 latency and online metrics.

Serving replicas store their cumulative counts once a minute at most
(:class:`CountsSample`, kept by the ledger); feedback is joined to
predictions that carry their time (:class:`TimedOutcome`). :func:`build_timeline`
cuts the experiment's span into at most ``points`` equal intervals of whole
minutes and gives, per variant,

- per interval: requests per minute, the error rate and the p99 latency of
  the requests counted in it (differences of the cumulative counts, the
  latency from the difference of the histograms, as Prometheus'
  ``histogram_quantile`` over ``increase``);
- at each interval's end: every online metric over the feedback so far (a
  cumulative curve, as experimentation dashboards show the running estimate;
  :func:`modelreg.experiments.report.running_values`).

Counts are summed over replicas; a replica that reported no sample in an
interval still counts with its last sample before it (its counts did not
change, or it stopped). Pure: the registry reads the samples and outcomes.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from modelreg.experiments import statistics
from modelreg.experiments.definition import LATENCY_BOUNDS_S, CountsSample, epoch_minute
from modelreg.experiments.report import P99, Metric, Outcome, running_values

DEFAULT_POINTS = 60
"""Intervals a timeline is cut into at most (a chart's points)."""


class TimedOutcome(NamedTuple):
    """A prediction with its feedback (:class:`Outcome`), the variant that made it, and when."""

    variant: str
    outcome: Outcome
    at: datetime


@dataclass(frozen=True)
class VariantSeries:
    """One variant's values, one per interval of the :class:`Timeline`.

    ``requests_per_minute``, ``error_rate`` (0 to 1) and ``p99_latency_ms``
    describe the requests counted in each interval (None when it had none);
    ``metrics`` maps each online metric to its value over all feedback up to
    the interval's end (None before there is any).
    """

    variant: str
    requests_per_minute: tuple[float, ...]
    error_rate: tuple[float | None, ...]
    p99_latency_ms: tuple[float | None, ...]
    metrics: dict[str, tuple[float | None, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Timeline:
    """An experiment cut into intervals of ``minutes`` each, ending at ``ends`` (aware UTC).

    ``share_metrics`` names the online metrics that are shares (0 to 1):
    every one but ``value``, a mean in the feedback's own units.
    """

    minutes: int
    ends: tuple[datetime, ...]
    variants: tuple[VariantSeries, ...]
    share_metrics: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: times as ISO 8601, NaN never (None instead)."""
        return {
            "interval_minutes": self.minutes,
            "share_metrics": sorted(self.share_metrics),
            "ends": [end.isoformat() for end in self.ends],
            "variants": [
                {
                    "variant": s.variant,
                    "requests_per_minute": list(s.requests_per_minute),
                    "error_rate": list(s.error_rate),
                    "p99_latency_ms": list(s.p99_latency_ms),
                    "metrics": {name: list(values) for name, values in s.metrics.items()},
                }
                for s in self.variants
            ],
        }


def interval_boundaries(start: datetime, end: datetime, points: int) -> tuple[int, list[int]]:
    """The interval length in minutes and the boundaries (epoch minutes) of the intervals.

    Interval k covers minutes (boundaries[k-1], boundaries[k]]; the last
    boundary is ``end``'s minute. The first interval also holds anything
    earlier (boundaries[0] is -1, before every epoch minute): a replica whose
    clock runs behind the one that stamped the start may stamp its first
    counts before it. Only the samples latest at or before each boundary
    matter (:meth:`modelreg.ledger.experiments.ExperimentStore.samples`).
    """
    first = epoch_minute(start)
    last = max(first, epoch_minute(end))
    span = last - first + 1
    step = max(1, math.ceil(span / max(1, points)))
    boundaries = list(range(last, first - 1, -step))[::-1]
    boundaries.insert(0, -1)
    return step, boundaries


def build_timeline(
    variants: Sequence[str],
    samples: Sequence[CountsSample],
    outcomes: Sequence[TimedOutcome],
    *,
    metrics: Sequence[Metric],
    start: datetime,
    end: datetime,
    points: int = DEFAULT_POINTS,
) -> Timeline:
    """The timeline of ``variants`` (in display order) from ``start`` to ``end`` (aware UTC).

    Intervals are whole minutes, at least one each, at most ``points`` of
    them (``points`` >= 1), the last ending with ``end``'s minute.
    Samples and outcomes of other variants, and those after ``end``, are
    ignored; earlier ones count in the first interval (as in the report);
    ``error_rate`` among ``metrics`` is skipped (it is charted from counts).
    """
    step, boundaries = interval_boundaries(start, end, points)
    # Each interval ends with the end of its last minute.
    ends = tuple(datetime.fromtimestamp((b + 1) * 60, UTC) for b in boundaries[1:])
    series = []
    for variant in variants:
        totals = _totals_at([s for s in samples if s.variant == variant], boundaries)
        per_minute: list[float] = []
        error_rate: list[float | None] = []
        p99: list[float | None] = []
        for before, after in itertools.pairwise(totals):
            requests = after[0] - before[0]
            errors = after[1] - before[1]
            latency = [a - b for a, b in zip(after[2], before[2], strict=True)]
            per_minute.append(requests / step)
            error_rate.append(errors / requests if requests > 0 else None)
            seconds = statistics.quantile_from_buckets(latency, P99) if requests > 0 else None
            p99.append(None if seconds is None else seconds * 1000)
        timed = sorted((o for o in outcomes if o.variant == variant), key=lambda o: o.at)
        times = [o.at for o in timed]
        cuts = [bisect.bisect_right(times, end_at) for end_at in ends]
        values = {
            str(m): tuple(running_values(m, [o.outcome for o in timed], cuts))
            for m in dict.fromkeys(metrics)
            if m is not Metric.ERROR_RATE
        }
        series.append(
            VariantSeries(variant, tuple(per_minute), tuple(error_rate), tuple(p99), values)
        )
    shares = frozenset(str(m) for m in metrics if m not in (Metric.VALUE, Metric.ERROR_RATE))
    return Timeline(step, ends, tuple(series), shares)


def _totals_at(
    samples: Sequence[CountsSample], boundaries: Sequence[int]
) -> list[tuple[int, int, tuple[int, ...]]]:
    """Requests, errors and latency summed over replicas as of each boundary minute."""
    by_replica: dict[str, list[CountsSample]] = {}
    for sample in sorted(samples, key=lambda s: s.minute):
        by_replica.setdefault(sample.replica, []).append(sample)
    minutes = {replica: [s.minute for s in found] for replica, found in by_replica.items()}
    zero = (0,) * len(LATENCY_BOUNDS_S)
    found = []
    for boundary in boundaries:
        requests = errors = 0
        latency = list(zero)
        for replica, replica_samples in by_replica.items():
            at = bisect.bisect_right(minutes[replica], boundary)
            if at == 0:
                continue
            latest = replica_samples[at - 1]
            requests += latest.requests
            errors += latest.errors
            latency = [a + b for a, b in zip(latency, latest.latency, strict=True)]
        found.append((requests, errors, tuple(latency)))
    return found
