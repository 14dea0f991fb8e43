"""Which serving replicas route an experiment, from their reports (`ab start --wait`)."""

from __future__ import annotations

from datetime import UTC, datetime

from modelreg.registry.serving import experiment_routing
from modelreg.views import ArmView, ExperimentView, ServedSlotView

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _experiment(*treatments: tuple[str, int]) -> ExperimentView:
    return ExperimentView(
        id="e1",
        model="m",
        state="running",
        control=ArmView(variant="control", version=1, share=0.8),
        control_alias="production",
        treatments=[ArmView(variant=v, version=n, share=0.1) for v, n in treatments],
        traffic=0.1,
        key_header="X-User-ID",
        shadow=False,
        metrics=["accuracy"],
        guardrails=[],
        revision=1,
        started_by="alice",
        started_at=NOW,
        stopped_at=None,
        concluded_at=None,
        stop_reason="",
        verdict=None,
    )


def _slot(
    replica: str, variant: str, version: int | None, model: str = "m", silent: float | None = None
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
    )


def test_a_replica_routes_once_every_treatment_is_loaded_at_its_version() -> None:
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
    ]
    routing = experiment_routing(view, slots)
    assert (routing.routed_by, routing.waiting) == (["a"], ["b", "c"])
    assert (routing.experiment, routing.model) == ("e1", "m")


def test_silent_replicas_and_other_models_do_not_count() -> None:
    view = _experiment(("treatment", 2))
    slots = [
        _slot("gone", "default", 1, silent=90.0),
        _slot("other", "treatment", 2, model="n"),
        _slot("a", "treatment", 2),
    ]
    assert experiment_routing(view, slots).routed_by == ["a"]
    assert experiment_routing(view, slots).waiting == []
    nobody = experiment_routing(view, [])
    assert (nobody.routed_by, nobody.waiting) == ([], [])
