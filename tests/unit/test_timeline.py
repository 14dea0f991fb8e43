"""An experiment over time: its intervals, counts from cumulative samples, running metrics."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.errors import InvalidInputError
from modelreg.experiments.definition import LATENCY_BOUNDS_S, CountsSample, epoch_minute
from modelreg.experiments.report import (
    DEFAULT_GUARDRAILS,
    Metric,
    Outcome,
    VariantData,
    build_report,
    running_values,
)
from modelreg.experiments.timeline import TimedOutcome, Timeline, build_timeline

START = datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC)  # half a minute into minute M0
M0 = epoch_minute(START)
BUCKETS = len(LATENCY_BOUNDS_S)


def _at(minute: int, second: int = 0) -> datetime:
    """``second`` seconds into minute ``M0 + minute``."""
    return datetime.fromtimestamp((M0 + minute) * 60 + second, UTC)


def _latency(**buckets: int) -> tuple[int, ...]:
    """Bucket counts from ``b<index>=count``."""
    counts = [0] * BUCKETS
    for name, count in buckets.items():
        counts[int(name[1:])] = count
    return tuple(counts)


def _sample(
    replica: str,
    minute: int,
    requests: int,
    errors: int = 0,
    latency: tuple[int, ...] | None = None,
    variant: str = "control",
) -> CountsSample:
    return CountsSample(
        replica, variant, M0 + minute, requests, errors, latency or _latency(b2=requests)
    )


def _timeline(
    samples: Sequence[CountsSample] = (),
    outcomes: Sequence[TimedOutcome] = (),
    *,
    minutes: int = 5,
    points: int = 60,
    metrics: tuple[Metric, ...] = (),
    variants: tuple[str, ...] = ("control",),
) -> Timeline:
    """The timeline from START to ``minutes`` minutes later (that many + 1 whole minutes)."""
    return build_timeline(
        variants,
        samples,
        outcomes,
        metrics=metrics,
        start=START,
        end=START + timedelta(minutes=minutes),
        points=points,
    )


# --- intervals ----------------------------------------------------------------------------


def test_a_span_shorter_than_the_points_gets_one_minute_intervals() -> None:
    timeline = _timeline(minutes=9, points=60)
    assert timeline.minutes == 1
    assert len(timeline.ends) == 10  # minutes M0 .. M0+9
    assert timeline.ends[0] == _at(1)  # the end of the start's minute
    assert timeline.ends[-1] == _at(10)  # the end of the end's minute
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(timeline.ends))
    assert [len(s.requests_per_minute) for s in timeline.variants] == [10]


@pytest.mark.parametrize(
    ("minutes", "points", "step", "intervals"),
    [(9, 4, 3, 4), (119, 60, 2, 60), (120, 60, 3, 41), (9, 10, 1, 10), (9, 1, 10, 1)],
)
def test_a_longer_span_gets_intervals_of_several_minutes_ending_with_the_end(
    minutes: int, points: int, step: int, intervals: int
) -> None:
    timeline = _timeline(minutes=minutes, points=points)
    assert timeline.minutes == step
    assert len(timeline.ends) == intervals <= points
    assert timeline.ends[-1] == _at(minutes + 1)
    assert all(b - a == timedelta(minutes=step) for a, b in itertools.pairwise(timeline.ends))
    assert timeline.ends[0] - timedelta(minutes=step) <= START  # the first interval holds the start


def test_an_end_at_or_before_the_start_is_one_interval_of_the_start_minute() -> None:
    for end in (START, START - timedelta(hours=1)):
        timeline = build_timeline(["control"], [], [], metrics=[], start=START, end=end)
        assert (timeline.minutes, timeline.ends) == (1, (_at(1),))


# --- counts -------------------------------------------------------------------------------


def test_requests_errors_and_p99_come_from_differences_of_the_cumulative_samples() -> None:
    samples = [
        _sample("r1", 1, 60, errors=6, latency=_latency(b2=60)),
        _sample("r1", 3, 120, errors=6, latency=_latency(b2=60, b5=60)),
    ]
    [series] = _timeline(samples, minutes=4).variants
    assert series.requests_per_minute == (0.0, 60.0, 0.0, 60.0, 0.0)
    assert series.error_rate == (None, 0.1, None, 0.0, None)
    # All 60 of minute 1 in (2.5, 5] ms, all 60 of minute 3 in (25, 50] ms: interpolated.
    assert series.p99_latency_ms[0] is None and series.p99_latency_ms[2] is None
    assert series.p99_latency_ms[1] == pytest.approx(2.5 + 2.5 * 0.99)
    assert series.p99_latency_ms[3] == pytest.approx(25 + 25 * 0.99)

    # Two-minute intervals: up to M0+1, (M0+1, M0+3], (M0+3, M0+5].
    [coarse] = _timeline(samples, minutes=5, points=3).variants
    assert coarse.requests_per_minute == (30.0, 30.0, 0.0)
    assert coarse.error_rate == (0.1, 0.0, None)


def test_replicas_add_up_and_a_replica_without_a_sample_counts_with_its_last_one() -> None:
    samples = [
        _sample("a", 1, 10),
        _sample("b", 2, 5),
        _sample("a", 3, 30, errors=3),
        _sample("b", 4, 25),
        _sample("c", 2, 1000, variant="treatment"),  # another variant: not counted here
    ]
    [series] = _timeline(samples, minutes=4).variants
    # At M0+3 "b" has no sample: its 5 from M0+2 still count (dropping them would
    # show "a"'s 20 new requests as 15, and "b"'s next 20 as 25).
    assert series.requests_per_minute == (0.0, 10.0, 5.0, 20.0, 20.0)
    assert series.error_rate == (None, 0.0, 0.0, 0.15, 0.0)


def test_a_restarted_replica_reports_under_a_new_id_and_its_counts_add_up() -> None:
    samples = [
        _sample("host/old", 0, 10),
        _sample("host/old", 2, 40),  # then the process stops
        _sample("host/new", 3, 10),  # its successor counts from zero again
        _sample("host/new", 4, 30),
    ]
    [series] = _timeline(samples, minutes=4).variants
    assert series.requests_per_minute == (10.0, 0.0, 30.0, 10.0, 20.0)


def test_counts_stamped_before_the_start_count_in_the_first_interval() -> None:
    # A replica whose clock runs behind stamped its first flush before the start.
    samples = [_sample("a", -2, 7, errors=7), _sample("a", 1, 10, errors=7)]
    [series] = _timeline(samples, minutes=2).variants
    assert series.requests_per_minute == (7.0, 3.0, 0.0)
    assert series.error_rate == (1.0, 0.0, None)


def test_latency_of_several_replicas_is_summed_before_the_quantile() -> None:
    samples = [
        _sample("a", 1, 99, latency=_latency(b2=99)),
        _sample("b", 1, 1, latency=_latency(b9=1)),  # one slow request in (0.5, 1] s
    ]
    [series] = _timeline(samples, minutes=1).variants
    # Rank 0.99 * 100 = 99 falls at the top of the (2.5, 5] ms bucket, not in the slow one.
    assert series.p99_latency_ms[1] == pytest.approx(5.0)
    assert series.requests_per_minute[1] == 100.0


# --- online metrics -----------------------------------------------------------------------

OUTCOMES = [
    TimedOutcome("control", Outcome(1.0, 1, 3.0), _at(0, 40)),
    TimedOutcome("control", Outcome(0.0, 0, 1.0), _at(1, 50)),  # given out of time order
    TimedOutcome("control", Outcome(1.0, 0, None), _at(1, 10)),
    TimedOutcome("control", Outcome(0.0, 1, 0.5), _at(3, 20)),
    TimedOutcome("control", Outcome(1.0, 1, 100.0), _at(9, 0)),  # after the end
    TimedOutcome("treatment", Outcome(0.0, 0, 7.0), _at(0, 50)),
]


def test_feedback_gives_each_metric_as_it_stood_at_each_interval_end() -> None:
    metrics = (Metric.ACCURACY, Metric.CONVERSION, Metric.VALUE, Metric.AUC, Metric.ERROR_RATE)
    timeline = _timeline(
        outcomes=OUTCOMES, minutes=4, metrics=metrics, variants=("control", "treatment")
    )
    control, treatment = timeline.variants
    assert set(control.metrics) == {"accuracy", "conversion", "value", "auc"}  # not error_rate
    # Feedback so far at the ends M0+1, +2, +3, +4, +5: 1, 3, 3, 4, 4 outcomes.
    assert control.metrics["accuracy"] == (1.0, 2 / 3, 2 / 3, 0.5, 0.5)
    assert control.metrics["conversion"] == (1.0, 2 / 3, 2 / 3, 0.75, 0.75)
    assert control.metrics["value"] == (3.0, 2.0, 2.0, 1.5, 1.5)
    auc = control.metrics["auc"]
    # AUC needs two labels of each class: the fourth outcome brings the second positive.
    assert auc[:3] == (None, None, None)
    assert auc[3:] == pytest.approx((0.5, 0.5))
    assert treatment.metrics["value"] == (7.0,) * 5


def test_metrics_are_none_before_any_feedback_and_json_never_holds_nan() -> None:
    outcomes = [TimedOutcome("control", Outcome(1.0, 1, 2.0), _at(3, 0))]
    timeline = _timeline(outcomes=outcomes, minutes=4, metrics=(Metric.VALUE, Metric.AUC))
    [series] = timeline.variants
    assert series.metrics["value"] == (None, None, 2.0, 2.0, 2.0)
    data = timeline.to_json()
    assert data["interval_minutes"] == 1
    assert data["share_metrics"] == ["auc"]  # value is a mean, not a share
    assert data["ends"][-1] == _at(5).isoformat()
    assert data["variants"][0]["metrics"]["value"] == [None, None, 2.0, 2.0, 2.0]
    assert "NaN" not in str(data)


def test_running_values_refuse_error_rate() -> None:
    with pytest.raises(InvalidInputError, match="error_rate"):
        running_values(Metric.ERROR_RATE, [], [0])


def _report_value(metric: Metric, outcomes: list[Outcome]) -> float | None:
    """``metric`` of a variant with ``outcomes``, as the experiment's report gives it."""
    variants = [
        VariantData(name, 1, 0.5, 0, 0, 0, (0,) * BUCKETS, tuple(outcomes))
        for name in ("control", "treatment")
    ]
    report = build_report(variants, metrics=[metric], guardrails=list(DEFAULT_GUARDRAILS))
    [found] = report.variants[0].metrics
    return found.value


def test_the_last_point_is_the_reports_value_to_the_last_bit() -> None:
    # Added slice by slice, 0.1 + (0.2 + 0.3) is 0.6 but the report's sum is 0.6000000000000001.
    outcomes = [Outcome(None, None, v) for v in (0.1, 0.2, 0.3)]
    running = running_values(Metric.VALUE, outcomes, [1, 3])
    assert running[-1] == _report_value(Metric.VALUE, outcomes)


_OUTCOME = st.builds(
    Outcome,
    st.one_of(st.none(), st.sampled_from([0.0, 1.0, 0.3, 0.8, "yes"])),
    st.one_of(st.none(), st.sampled_from([0, 1, 1.0, "no"])),
    st.one_of(
        st.none(),
        st.sampled_from([0.1, 0.2, 0.3, 0.7]),  # sums that round differently by grouping
        st.floats(-1e6, 1e6, allow_nan=False),
        st.just(math.inf),
    ),
)


@settings(max_examples=80, deadline=None)
@given(
    outcomes=st.lists(_OUTCOME, max_size=30),
    metric=st.sampled_from([Metric.ACCURACY, Metric.CONVERSION, Metric.VALUE, Metric.AUC]),
    data=st.data(),
)
def test_running_values_are_the_report_over_each_prefix(
    outcomes: list[Outcome], metric: Metric, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(outcomes)), max_size=6)))
    cuts.append(len(outcomes))
    running = running_values(metric, outcomes, cuts)
    assert running == [_report_value(metric, outcomes[:cut]) for cut in cuts]


# --- property: totals ---------------------------------------------------------------------


@st.composite
def _replica_samples(draw: st.DrawFn) -> list[CountsSample]:
    """Cumulative (never decreasing) samples of a few replicas at distinct minutes of the span."""
    found = []
    for replica in draw(st.lists(st.sampled_from("abcd"), unique=True, max_size=4)):
        # Minutes before the start too: a replica's clock may run behind the registry's.
        minutes = sorted(draw(st.sets(st.integers(-5, 90), min_size=1, max_size=8)))
        requests = errors = 0
        latency = [0] * BUCKETS
        for minute in minutes:
            more = draw(st.integers(0, 50))
            failed = draw(st.integers(0, more))
            requests, errors = requests + more, errors + failed
            latency[draw(st.integers(0, BUCKETS - 1))] += more
            sample = CountsSample(replica, "control", M0 + minute, requests, errors, tuple(latency))
            found.append(sample)
    return found


@settings(max_examples=100, deadline=None)
@given(samples=_replica_samples(), points=st.integers(1, 100))
def test_the_intervals_add_up_to_the_replicas_last_samples(
    samples: list[CountsSample], points: int
) -> None:
    timeline = _timeline(samples, minutes=90, points=points)
    assert len(timeline.ends) <= points
    [series] = timeline.variants
    last: dict[str, CountsSample] = {}
    for sample in sorted(samples, key=lambda s: s.minute):
        last[sample.replica] = sample
    counted = sum(round(rate * timeline.minutes) for rate in series.requests_per_minute)
    assert counted == sum(s.requests for s in last.values())
    errors = sum(
        round(rate * timeline.minutes * share)
        for rate, share in zip(series.requests_per_minute, series.error_rate, strict=True)
        if share is not None
    )
    assert errors == sum(s.errors for s in last.values())
