"""An experiment record's shares: the split now, and the split expected over its ramps.

The sample-ratio check compares counted requests with what the split should
have produced; after a ramp that is the request-weighted mix of the splits in
force, or the ramp itself would look like a mismatch.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.experiments.definition import Arm, ExperimentState
from modelreg.ledger.experiments import ExperimentRecord, Segment


def _record(traffic: float, *segments: Segment, treatments: int = 1) -> ExperimentRecord:
    names = ["treatment"] if treatments == 1 else [f"treatment-{i + 1}" for i in range(treatments)]
    return ExperimentRecord(
        id="e1",
        model="m",
        state=ExperimentState.RUNNING,
        control=Arm("control", 1),
        control_alias="production",
        treatments=tuple(Arm(n, i + 2) for i, n in enumerate(names)),
        traffic=traffic,
        key_header="X-User-ID",
        shadow=False,
        metrics=("accuracy",),
        guardrails=(),
        revision=1,
        started_by="alice",
        started_at=datetime.now(UTC),
        segments=segments or (Segment(traffic, 0),),
    )


def test_shares_now_give_control_the_rest() -> None:
    assert _record(0.1).shares() == pytest.approx({"control": 0.9, "treatment": 0.1})
    two = _record(0.2, treatments=2).shares()
    assert two == pytest.approx({"control": 0.6, "treatment-1": 0.2, "treatment-2": 0.2})


def test_stopped_or_shadow_experiments_send_everyone_to_control() -> None:
    stopped = replace(_record(0.3), state=ExperimentState.STOPPED)
    assert stopped.shares() == {"control": 1.0, "treatment": 0.0}
    assert stopped.route.variant_for("anyone") == "control"
    shadow = replace(_record(0.3), shadow=True)
    assert shadow.route.variant_for("anyone") == "control"
    assert shadow.expected_shares(100) == {"control": 1.0, "treatment": 1.0}


def test_a_ramp_is_weighted_by_the_requests_counted_before_and_after_it() -> None:
    # 1,000 requests at 10%, then 1,000 at 50%: 30% expected in treatment overall.
    record = _record(0.5, Segment(0.1, 0), Segment(0.5, 1000))
    assert record.expected_shares(2000) == pytest.approx({"control": 0.7, "treatment": 0.3})
    # Nothing counted after the ramp yet: the first segment's split.
    assert record.expected_shares(1000) == pytest.approx({"control": 0.9, "treatment": 0.1})


@given(
    st.lists(st.floats(0.01, 0.5), min_size=1, max_size=5),
    st.lists(st.integers(0, 10_000), min_size=5, max_size=5),
)
def test_expected_shares_are_a_distribution_between_the_splits_used(
    traffics: list[float], gaps: list[int]
) -> None:
    starts = [sum(gaps[:i]) for i in range(len(traffics))]
    record = _record(traffics[-1], *(Segment(t, s) for t, s in zip(traffics, starts, strict=True)))
    shares = record.expected_shares(starts[-1] + gaps[-1])
    assert sum(shares.values()) == pytest.approx(1.0)
    assert min(traffics) - 1e-9 <= shares["treatment"] <= max(traffics) + 1e-9
