"""Per-variant counts, the prediction log buffer and their flushes (in memory, no services)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest
from experiment_fakes import Experiments
from prometheus_client import CollectorRegistry

from modelreg.experiments.definition import LATENCY_BOUNDS_S, Feedback, FeedbackResult
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.recording import ExperimentRecorder, first_output, replica_id


def _recorder(experiments: Experiments, **options: Any) -> ExperimentRecorder:
    return ExperimentRecorder(
        experiments, ServingMetrics(CollectorRegistry()), replica="host/r1", **options
    )


def _observe(
    recorder: ExperimentRecorder,
    request_id: str,
    *,
    variant: str = "control",
    seconds: float = 0.003,
    error: bool = False,
    missing_key: bool = False,
    prediction: float | str | None = 1.0,
) -> None:
    recorder.observe(
        experiment_id="exp-1",
        model="churn",
        variant=variant,
        version=1 if variant == "control" else 2,
        request_id=request_id,
        seconds=seconds,
        error=error,
        missing_key=missing_key,
        prediction=prediction,
    )


@pytest.mark.parametrize(
    ("predictions", "expected"),
    [
        (np.array([0.25, 0.5]), 0.25),
        (np.array([[3, 4]]), 3.0),
        (pd.DataFrame({"p": [0.7], "q": [1]}), 0.7),
        (pd.Series(["yes", "no"]), "yes"),
        ([True], 1.0),
        ([[float("nan")]], None),
        ([], None),
        ({"a": 1}, None),
    ],
)
def test_first_output_is_the_first_value_of_the_first_row(
    predictions: object, expected: float | str | None
) -> None:
    assert first_output(predictions) == expected


def test_counts_accumulate_per_variant_and_version() -> None:
    recorder = _recorder(Experiments())
    _observe(recorder, "r1", prediction=2.0, seconds=0.0005)
    _observe(recorder, "r2", prediction=4.0, missing_key=True, seconds=0.003)
    _observe(recorder, "r3", error=True, prediction=None, seconds=99)
    _observe(recorder, "r4", variant="treatment", prediction="yes")
    control, treatment = recorder.counts()
    assert (control.variant, control.version, treatment.variant, treatment.version) == (
        "control",
        1,
        "treatment",
        2,
    )
    assert (control.requests, control.errors, control.missing_key) == (3, 1, 1)
    assert (control.predictions, control.prediction_sum, control.prediction_sumsq) == (2, 6.0, 20.0)
    assert len(control.latency) == len(LATENCY_BOUNDS_S)
    assert control.latency[0] == 1 and control.latency[2] == 1 and control.latency[-1] == 1
    assert treatment.predictions == 0  # a label is logged, not summed
    assert recorder.pending == 3  # the error has no prediction to log


def test_a_flush_writes_counts_and_records_once_and_retries_after_a_failure() -> None:
    experiments = Experiments()
    recorder = _recorder(experiments)
    _observe(recorder, "r1")

    async def scenario() -> None:
        experiments.failing = True
        assert await recorder.flush() is False
        assert recorder.pending == 1  # kept for the next round
        experiments.failing = False
        assert await recorder.flush() is True
        assert (experiments.count_calls, experiments.log_calls) == (2, 2)
        assert await recorder.flush() is True  # nothing new: no writes at all
        assert (experiments.count_calls, experiments.log_calls) == (2, 2)

    asyncio.run(scenario())
    [[counts]] = experiments.counts.values()
    assert counts.requests == 1
    assert [r.request_id for r in experiments.logged] == ["r1"]
    failures = recorder.metrics.registry.get_sample_value(
        "modelreg_serving_experiment_flush_failures_total", {"what": "counts"}
    )
    assert failures == 1


def test_the_flusher_writes_every_interval() -> None:
    experiments = Experiments()
    recorder = _recorder(experiments, flush_interval=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(recorder.run())
        for i in range(3):
            _observe(recorder, f"r{i}")
            await asyncio.sleep(0.08)
        task.cancel()

    asyncio.run(scenario())
    assert experiments.count_calls >= 3
    assert experiments.totals() == {"control": 3}


def test_a_full_buffer_drops_and_counts_and_sampling_keeps_a_share() -> None:
    recorder = _recorder(Experiments(), buffer=2)
    for i in range(5):
        _observe(recorder, f"r{i}")
    assert recorder.pending == 2
    dropped = recorder.metrics.registry.get_sample_value(
        "modelreg_serving_prediction_log_dropped_total"
    )
    assert dropped == 3
    assert recorder.counts()[0].requests == 5  # counts are never sampled or dropped
    none = _recorder(Experiments(), sample_rate=0.0)
    _observe(none, "r1")
    assert none.pending == 0
    half = _recorder(Experiments(), sample_rate=0.5)
    for i in range(2_000):
        _observe(half, f"r{i}")
    assert 800 < half.pending < 1_200


def test_feedback_writes_its_prediction_first() -> None:
    experiments = Experiments()
    recorder = _recorder(experiments)
    _observe(recorder, "r1")
    _observe(recorder, "r2")
    result = asyncio.run(recorder.feedback(Feedback("r2", label=1.0)))
    assert result is FeedbackResult.RECORDED
    assert [r.request_id for r in experiments.logged] == ["r2"]
    assert recorder.pending == 1  # r1 waits for the flusher


def test_each_process_has_its_own_replica_id() -> None:
    first, second = replica_id(), replica_id()
    assert first != second
    assert first.split("/")[0] == second.split("/")[0]
