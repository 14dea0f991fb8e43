"""A/B experiments through the Registry on real MLflow and ledgers (SQLite+local, PostgreSQL+S3).

Counts and predictions are written the way serving replicas write them (the
ExperimentSource methods); the real-server path is in tests/serving.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from mlflow import MlflowClient
from registry_helpers import production, write_policy

from modelreg.domain import Action, Stage
from modelreg.errors import (
    ConflictError,
    ExpiredError,
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    VersionNotFoundError,
)
from modelreg.experiments.definition import (
    LATENCY_BOUNDS_S,
    ExperimentState,
    Feedback,
    FeedbackResult,
    PredictionRecord,
    VariantCounts,
)
from modelreg.ledger.experiments import ExperimentStore
from modelreg.registry import Registry

pytestmark = pytest.mark.integration

Versions = Callable[[str, int], list[int]]


def _counts(
    experiment: str, variant: str, version: int, requests: int, errors: int = 0, slow: int = 0
) -> VariantCounts:
    latency = [0] * len(LATENCY_BOUNDS_S)
    latency[2] = requests - slow
    latency[-2] = slow  # 5-10 s: far over any p99 guardrail
    return VariantCounts(experiment, variant, version, requests, errors, 0, tuple(latency), 0, 0, 0)


def _feed(
    registry: Registry,
    experiment: str,
    model: str,
    variant: str,
    version: int,
    n: int,
    correct: int,
) -> None:
    now = datetime.now(UTC)
    records = [
        PredictionRecord(
            f"{experiment}-{variant}-{i}", model, experiment, variant, version, 1.0, now
        )
        for i in range(n)
    ]
    registry.log_predictions(records)
    for i in range(n):
        registry.record_feedback(
            Feedback(f"{experiment}-{variant}-{i}", label=1.0 if i < correct else 0.0)
        )


def _promoted(registry: Registry, name: str, versions: Versions) -> tuple[int, int]:
    control, treatment = versions(name, 2)
    registry.promote(name, control, Stage.PRODUCTION)
    return control, treatment


def _actions(registry: Registry, name: str) -> list[Action]:
    return [e.action for e in registry.history(name).events]


def test_bad_starts_are_refused_and_write_nothing(
    registry: Registry, quick_versions: Versions, model_name: str
) -> None:
    control, treatment = _promoted(registry, model_name, quick_versions)
    before = _actions(registry, model_name)
    for traffic in (0.0, -0.1, 1.5, math.nan, math.inf):
        with pytest.raises(InvalidInputError, match="traffic"):
            registry.ab_start(model_name, [treatment], traffic=traffic)
    with pytest.raises(InvalidInputError, match="control version"):
        registry.ab_start(model_name, [control], traffic=0.1)
    with pytest.raises(VersionNotFoundError):
        registry.ab_start(model_name, [99], traffic=0.1)
    with pytest.raises(VersionNotFoundError):
        registry.ab_start(model_name, [treatment], traffic=0.1, control="nosuchalias")
    with pytest.raises(InvalidInputError, match="metric"):
        registry.ab_start(model_name, [treatment], traffic=0.1, metrics=["happiness"])
    with pytest.raises(InvalidInputError, match="guardrail"):
        registry.ab_start(model_name, [treatment], traffic=0.1, guardrails=["error_rate>>1"])
    with pytest.raises(InvalidInputError, match="header"):
        registry.ab_start(model_name, [treatment], traffic=0.1, key_header="X User\n")
    with pytest.raises(InvalidInputError, match="identifies the user"):
        registry.ab_start(model_name, [treatment], traffic=0.1, key_header="Content-Length")
    with pytest.raises(InvalidInputError, match="one bucket"):
        registry.ab_start(model_name, [treatment], traffic=1e-300)
    with pytest.raises(InvalidInputError, match="invalid version"):
        registry.ab_start(model_name, [2**80], traffic=0.1)
    with pytest.raises(ModelNotFoundError):
        registry.ab_ramp("no-such-model-ab", 0.2)
    with pytest.raises(NotFoundError, match="no running or stopped experiment"):
        registry.ab_stop(model_name)
    assert _actions(registry, model_name) == before
    assert registry.ab_list(model=model_name) == []
    assert registry.experiment(model_name) is None
    tags = (
        MlflowClient(registry.gateway.tracking_uri)
        .get_model_version(model_name, str(treatment))
        .tags
    )
    assert "ab_traffic" not in tags


def test_start_ramp_stop_are_events_tags_and_routes(
    registry: Registry, quick_versions: Versions, model_name: str
) -> None:
    control, treatment = _promoted(registry, model_name, quick_versions)
    view = registry.ab_start(model_name, [str(treatment)], traffic=0.1, reason="try v2")
    assert (view.state, view.control.version, view.control_alias) == (
        "running",
        control,
        "production",
    )
    assert [(a.variant, a.version, a.share) for a in view.treatments] == [
        ("treatment", treatment, 0.1)
    ]
    with pytest.raises(ConflictError, match="already has experiment"):
        registry.ab_start(model_name, [treatment], traffic=0.2)

    client = MlflowClient(registry.gateway.tracking_uri)
    tags = client.get_model_version(model_name, str(treatment)).tags
    assert (tags["ab_traffic"], tags["modelreg.ab.variant"]) == ("0.1", "treatment")
    assert tags["modelreg.ab.experiment"] == view.id
    assert client.get_model_version(model_name, str(control)).tags["ab_traffic"] == "0.9"

    route = registry.experiment(model_name)
    assert route is not None and route.id == view.id and route.traffic == 0.1
    ramped = registry.ab_ramp(model_name, 0.5)
    assert ramped.revision == view.revision + 1
    route = registry.experiment(model_name)
    assert route is not None and route.traffic == 0.5 and route.revision == ramped.revision
    assert client.get_model_version(model_name, str(treatment)).tags["ab_traffic"] == "0.5"
    with pytest.raises(InvalidInputError):
        registry.ab_ramp(model_name, 1.2)
    assert registry.ab_ramp(model_name, 0.5).revision == ramped.revision  # no-op, no event

    stopped = registry.ab_stop(model_name, reason="enough")
    assert stopped.state == "stopped"
    route = registry.experiment(model_name)
    assert route is not None and route.state is ExperimentState.STOPPED
    assert route.variant_for("any-user") == "control"
    assert client.get_model_version(model_name, str(treatment)).tags["ab_traffic"] == "0"
    with pytest.raises(ConflictError, match="is stopped, not running"):
        registry.ab_ramp(model_name, 0.2)
    with pytest.raises(ConflictError, match="conclude it first"):
        registry.ab_start(model_name, [treatment], traffic=0.1)

    concluded = registry.ab_conclude(model_name)
    assert concluded.state == "concluded" and concluded.report is not None
    assert registry.experiment(model_name) is None
    events = [e for e in registry.history(model_name).events if e.action.value.startswith("ab_")]
    assert [e.action for e in events] == [
        Action.AB_START,
        Action.AB_RAMP,
        Action.AB_STOP,
        Action.AB_CONCLUDE,
    ]
    assert events[0].reason == "try v2" and events[0].actor == "alice"
    assert events[0].details["experiment"] == view.id
    assert events[1].details["traffic"] == 0.5
    assert [v.id for v in registry.ab_list(model=model_name)] == [view.id]
    assert registry.ab_status(model_name).state == "concluded"


def test_counts_from_replicas_add_up_and_feedback_joins_once(
    registry: Registry, quick_versions: Versions, model_name: str
) -> None:
    control, treatment = _promoted(registry, model_name, quick_versions)
    view = registry.ab_start(model_name, [treatment], traffic=0.5)
    for replica, n in (("replica-a", 300), ("replica-b", 200)):
        registry.record_variant_counts(
            replica,
            [_counts(view.id, "control", control, n), _counts(view.id, "treatment", treatment, n)],
        )
    # A replica flushes cumulative counts: a second flush replaces, it does not add.
    registry.record_variant_counts("replica-a", [_counts(view.id, "control", control, 310)])
    store = ExperimentStore(registry.ledger)
    totals = {t.variant: t for t in store.totals(view.id)}
    assert totals["control"].requests == 510 and totals["control"].replicas == 2
    assert totals["treatment"].requests == 500

    now = datetime.now(UTC)
    record = PredictionRecord(f"{view.id}-1", model_name, view.id, "treatment", treatment, 1.0, now)
    registry.log_predictions([record, record])  # a re-flushed batch logs once
    with pytest.raises(NotFoundError, match="no prediction"):
        registry.record_feedback(Feedback("req-unknown", label=1.0))
    with pytest.raises(InvalidInputError):
        registry.record_feedback(Feedback(f"{view.id}-1"))
    assert registry.record_feedback(Feedback(f"{view.id}-1", label=1.0)) is FeedbackResult.RECORDED
    assert registry.record_feedback(Feedback(f"{view.id}-1", label=1.0)) is FeedbackResult.DUPLICATE
    assert registry.record_feedback(Feedback(f"{view.id}-1", label="1")) is FeedbackResult.DUPLICATE
    with pytest.raises(ConflictError, match="already has feedback"):
        registry.record_feedback(Feedback(f"{view.id}-1", label=0.0))

    old = PredictionRecord(f"{view.id}-old", model_name, view.id, "control", control, 0.0, now)
    registry.log_predictions([old])
    store.prune(retention=timedelta(days=1), max_rows=10**6, now=now + timedelta(days=2))
    with pytest.raises(ExpiredError, match="retention"):
        registry.record_feedback(Feedback(f"{view.id}-old", label=1.0))
    registry.ab_stop(model_name)
    registry.ab_conclude(model_name)


def test_a_better_treatment_wins_and_conclude_promotes_it(
    registry: Registry, quick_versions: Versions, model_name: str
) -> None:
    control, treatment = _promoted(registry, model_name, quick_versions)
    view = registry.ab_start(model_name, [treatment], traffic=0.5, metrics=["accuracy"])
    registry.record_variant_counts(
        "r1",
        [
            _counts(view.id, "control", control, 2000),
            _counts(view.id, "treatment", treatment, 2000),
        ],
    )
    _feed(registry, view.id, model_name, "control", control, 600, 360)  # 60% accurate
    _feed(registry, view.id, model_name, "treatment", treatment, 600, 480)  # 80% accurate
    status = registry.ab_status(model_name)
    assert status.report is not None
    assert status.report["winner"] == "treatment", status.report
    assert status.report["srm"]["flagged"] is False

    concluded = registry.ab_conclude(model_name, promote=True, reason="v2 is better")
    assert concluded.state == "concluded"
    assert concluded.verdict is not None and concluded.verdict["promoted"] == treatment
    assert production(registry, model_name) == treatment
    history = registry.history(model_name).events
    conclusion = next(e for e in history if e.action is Action.AB_CONCLUDE)
    assert conclusion.details["winner"] == "treatment"
    assert conclusion.details["evidence"]["winner"] == "treatment"
    assert conclusion.reason == "v2 is better"
    assert any(e.action is Action.REQUEST and view.id in e.reason + str(e.details) for e in history)


def test_conclude_promote_goes_through_the_gates_and_roles(
    registry: Registry, quick_versions: Versions, model_name: str
) -> None:
    control, treatment = _promoted(registry, model_name, quick_versions)
    write_policy(registry)
    with pytest.raises(PermissionDeniedError):
        registry.ab_start(model_name, [treatment], traffic=0.1, actor="victor")
    view = registry.ab_start(model_name, [treatment], traffic=0.5, actor="connie")
    registry.record_variant_counts(
        "r1",
        [
            _counts(view.id, "control", control, 2000),
            _counts(view.id, "treatment", treatment, 2000),
        ],
    )
    _feed(registry, view.id, model_name, "control", control, 600, 300)
    _feed(registry, view.id, model_name, "treatment", treatment, 600, 500)
    with pytest.raises(PermissionDeniedError, match="approver"):
        registry.ab_conclude(model_name, promote=True, actor="connie")
    # The versions made by a plain MLflow client lack the policy's test_auc gate: refused,
    # the refusal recorded, the experiment still open and Production unchanged.
    from modelreg.errors import GateFailedError

    with pytest.raises(GateFailedError):
        registry.ab_conclude(model_name, promote=True, actor="alice")
    assert registry.experiment(model_name) is not None
    assert production(registry, model_name) == control
    assert Action.DECLINE in _actions(registry, model_name)
    registry.ab_conclude(model_name, actor="connie")


def test_a_breached_guardrail_stops_the_experiment_on_its_own(
    registry: Registry, quick_versions: Versions, model_name: str
) -> None:
    control, treatment = _promoted(registry, model_name, quick_versions)
    view = registry.ab_start(model_name, [treatment], traffic=0.5, guardrails=["error_rate<0.05"])
    registry.record_variant_counts(
        "r1",
        [
            _counts(view.id, "control", control, 1000, errors=5),
            _counts(view.id, "treatment", treatment, 1000, errors=300),
        ],
    )
    stopped = [v for v in registry.guard_experiments() if v.model == model_name]
    assert [v.id for v in stopped] == [view.id]
    route = registry.experiment(model_name)
    assert route is not None and route.state is ExperimentState.STOPPED
    auto = next(e for e in registry.history(model_name).events if e.action is Action.AB_AUTO_STOP)
    assert auto.actor == registry.settings.automation_actor
    assert "error_rate" in auto.reason and auto.details["breaches"]
    registry.ab_conclude(model_name)


def test_several_treatments_share_the_space_and_semvers_name_versions(
    registry: Registry, quick_versions: Versions, model_name: str
) -> None:
    control, *_ = quick_versions(model_name, 3)
    registry.promote(model_name, control, Stage.PRODUCTION)
    second, third = (registry.show(model_name, v).semver for v in (control + 1, control + 2))
    assert second and third
    with pytest.raises(InvalidInputError, match="between 0 and 0.5"):
        registry.ab_start(model_name, [second, third], traffic=0.6)
    with pytest.raises(InvalidInputError, match="different version"):
        registry.ab_start(model_name, [second, str(control + 1)], traffic=0.1)
    view = registry.ab_start(model_name, [second, third], traffic=0.25)
    assert [(a.variant, a.version) for a in view.treatments] == [
        ("treatment-1", control + 1),
        ("treatment-2", control + 2),
    ]
    assert view.control.share == pytest.approx(0.5)
    route = registry.experiment(model_name)
    assert route is not None
    seen = {route.variant_for(f"user-{i}") for i in range(2000)}
    assert seen == {"control", "treatment-1", "treatment-2"}
    registry.ab_stop(model_name)
    registry.ab_conclude(model_name)
