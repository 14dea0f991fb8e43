"""Which serving replicas follow an experiment, from their reports (`ab ... --wait`)."""

from __future__ import annotations

from datetime import UTC, datetime

from modelreg.registry.serving import experiment_routing
from modelreg.views import ArmView, ExperimentRoutingView, ExperimentView, ServedSlotView

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _experiment(
    *treatments: tuple[str, int], state: str = "running", revision: int = 1
) -> ExperimentView:
    return ExperimentView(
        id="e1",
        model="m",
        state=state,
        control=ArmView(variant="control", version=1, share=0.8),
        control_alias="production",
        treatments=[ArmView(variant=v, version=n, share=0.1) for v, n in treatments],
        traffic=0.1,
        key_header="X-User-ID",
        shadow=False,
        metrics=["accuracy"],
        guardrails=[],
        revision=revision,
        started_by="alice",
        started_at=NOW,
        stopped_at=None,
        concluded_at=None,
        stop_reason="",
        verdict=None,
    )


def _slot(
    replica: str,
    variant: str,
    version: int | None,
    routes: tuple[str, int] | None = ("e1", 1),
    *,
    model: str = "m",
    silent: float | None = None,
) -> ServedSlotView:
    return ServedSlotView(
        replica=replica,
        model=model,
        variant=variant,
        alias=None,
        version=version,
        semver=None,
        digest=None,
        since=None,
        reasons=[],
        reported_at=NOW,
        silent_seconds=silent,
        experiment=routes[0] if routes else None,
        experiment_revision=routes[1] if routes else None,
    )


def _split(routing: ExperimentRoutingView) -> tuple[list[str], list[str]]:
    return routing.routed_by, routing.waiting


def test_a_replica_routes_a_running_experiment_by_its_revision_with_every_treatment_loaded() -> (
    None
):
    view = _experiment(("treatment-1", 2), ("treatment-2", 3))
    slots = [
        _slot("a", "default", 1),
        _slot("a", "treatment-1", 2),
        _slot("a", "treatment-2", 3),
        _slot("b", "default", 1),
        _slot("b", "treatment-1", 2),
        _slot("b", "treatment-2", None),  # still loading
        _slot("c", "default", 1),
        _slot("c", "treatment-1", 7),  # an older experiment's arm
        _slot("c", "treatment-2", 3),
        _slot("d", "default", 1, None),  # all loaded, router not switched yet
        _slot("d", "treatment-1", 2, None),
        _slot("d", "treatment-2", 3, None),
    ]
    routing = experiment_routing(view, slots)
    assert _split(routing) == (["a"], ["b", "c", "d"])
    assert (routing.experiment, routing.model) == ("e1", "m")


def test_a_ramp_or_stop_is_followed_once_a_replica_routes_by_its_revision() -> None:
    slots = [
        _slot("a", "default", 1, ("e1", 2)),
        _slot("a", "treatment", 2, ("e1", 2)),
        _slot("b", "default", 1, ("e1", 1)),  # still on the start
        _slot("b", "treatment", 2, ("e1", 1)),
        _slot("c", "default", 1, ("e0", 9)),  # another experiment's revision
    ]
    ramped = _experiment(("treatment", 2), revision=2)
    assert _split(experiment_routing(ramped, slots)) == (["a"], ["b", "c"])
    # Stopped: everyone to control; the treatments need not be loaded any more.
    stopped = _experiment(("treatment", 2), state="stopped", revision=3)
    slots = [_slot("a", "default", 1, ("e1", 3)), _slot("b", "default", 1, ("e1", 2))]
    assert _split(experiment_routing(stopped, slots)) == (["a"], ["b"])


def test_a_concluded_experiment_is_followed_once_a_replica_no_longer_routes_by_it() -> None:
    concluded = _experiment(("treatment", 2), state="concluded", revision=3)
    slots = [
        _slot("a", "default", 1, None),
        _slot("b", "default", 1, ("e1", 3)),
        _slot("c", "default", 1, ("e2", 1)),  # already in the next experiment
    ]
    assert _split(experiment_routing(concluded, slots)) == (["a", "c"], ["b"])


def test_silent_replicas_and_other_models_do_not_count() -> None:
    view = _experiment(("treatment", 2))
    slots = [
        _slot("gone", "default", 1, silent=90.0),
        _slot("other", "treatment", 2, model="n"),
        _slot("a", "treatment", 2),
    ]
    assert _split(experiment_routing(view, slots)) == (["a"], [])
    assert _split(experiment_routing(view, [])) == ([], [])
