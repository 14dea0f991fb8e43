"""Routing and slots keyed by (model, variant), without services: pure logic."""

from __future__ import annotations

import pytest
from experiment_fakes import ramped, route
from hypothesis import given
from hypothesis import strategies as st
from serving_helpers import slot

from modelreg.errors import NotFoundError
from modelreg.experiments.assignment import CONTROL
from modelreg.experiments.definition import DEFAULT_KEY_HEADER, ExperimentRoute, ExperimentState
from modelreg.serving.router import (
    DEFAULT_DECISION,
    DEFAULT_VARIANT,
    Decision,
    DefaultRouter,
    ExperimentRouter,
    RoutePlan,
)
from modelreg.serving.slots import SlotSet


@given(st.text(max_size=20), st.text(max_size=40))
def test_without_experiments_every_request_goes_to_the_default_variant(
    model: str, key: str
) -> None:
    assert DefaultRouter().route(model, key) == DEFAULT_VARIANT


def test_two_variants_of_one_model_get_their_own_slots() -> None:
    control, treatment, other = slot("churn"), slot("churn", "treatment"), slot("fraud")
    slots = SlotSet([control, treatment, other])
    assert slots.get("churn") is control
    assert slots.get("churn", DEFAULT_VARIANT) is control
    assert slots.get("churn", "treatment") is treatment
    assert slots.get("fraud") is other
    assert slots.default is control
    assert slots.models == ["churn", "fraud"]
    assert [s.label for s in slots.slots.values()] == ["churn", "churn:treatment", "fraud"]
    assert set(slots.readiness()["models"]) == {"churn", "churn:treatment", "fraud"}
    assert [s["variant"] for s in slots.versions()["models"]] == [
        DEFAULT_VARIANT,
        "treatment",
        DEFAULT_VARIANT,
    ]


def test_unknown_models_and_variants_are_not_found() -> None:
    slots = SlotSet([slot("churn"), slot("churn", "treatment")])
    with pytest.raises(NotFoundError, match="'nope' is not served here; this server serves: churn"):
        slots.get("nope")
    with pytest.raises(
        NotFoundError, match="has no variant 'b' here; it serves: default, treatment"
    ):
        slots.get("churn", "b")


def test_a_model_variant_has_one_slot() -> None:
    with pytest.raises(ValueError, match="one slot"):
        SlotSet([slot("churn", "a"), slot("churn", "a")])
    with pytest.raises(ValueError, match="at least one"):
        SlotSet([])


# -- the experiment router ---------------------------------------------------------------


def _router(experiment: ExperimentRoute, unready: frozenset[str] = frozenset()) -> ExperimentRouter:
    router = ExperimentRouter()
    router.switch(experiment.model, RoutePlan.of(experiment, unready))
    return router


def _keyed(key: str) -> dict[str, str]:
    return {DEFAULT_KEY_HEADER.lower(): key}


def test_outside_an_experiment_the_experiment_router_routes_to_the_default_variant() -> None:
    router = ExperimentRouter()
    assert router.decide("churn", _keyed("u1"), "r1") == DEFAULT_DECISION
    router.switch("churn", RoutePlan.of(route("churn")))
    router.switch("churn", None)
    assert router.decide("churn", _keyed("u1"), "r1") == DEFAULT_DECISION


def test_routing_is_sticky_shares_traffic_and_matches_the_route() -> None:
    experiment = route("churn", traffic=0.1)
    router = _router(experiment)
    keys = [f"user-{i}" for i in range(20_000)]
    first = [router.decide("churn", _keyed(k), f"r{i}") for i, k in enumerate(keys)]
    # The same key, another request id: the same variant, and the route's own answer.
    again = [router.decide("churn", _keyed(k), "other").variant for k in keys]
    assert [d.variant for d in first] == again == [experiment.variant_for(k) for k in keys]
    share = sum(d.variant == "treatment" for d in first) / len(keys)
    assert abs(share - 0.10) <= 0.006
    assert all(d.experiment is experiment and not d.missing_key for d in first)
    assert {d.variant for d in first} == {CONTROL, "treatment"}


def test_ramping_up_moves_no_treated_key_back_to_control() -> None:
    keys = [f"k{i}" for i in range(5_000)]
    before = _router(route("churn", traffic=0.1))
    after = _router(ramped(route("churn", traffic=0.1), traffic=0.5))
    treated = [k for k in keys if before.route("churn", k) == "treatment"]
    assert treated
    assert all(after.route("churn", k) == "treatment" for k in treated)
    assert sum(after.route("churn", k) == "treatment" for k in keys) > 2 * len(treated)


def test_a_stopped_experiment_sends_everyone_to_control_and_counts_nothing() -> None:
    router = _router(route("churn", traffic=0.5, state=ExperimentState.STOPPED))
    decisions = {router.decide("churn", _keyed(f"u{i}"), "r") for i in range(500)}
    assert decisions == {Decision(CONTROL)}


def test_a_missing_routing_header_falls_back_to_the_request_id_and_is_flagged() -> None:
    experiment = route("churn", traffic=0.5, key_header="X-Account")
    router = _router(experiment)
    for i in range(200):
        decision = router.decide("churn", {}, f"req-{i}")
        assert decision.missing_key
        assert decision.variant == experiment.variant_for(f"req-{i}")
        keyed = router.decide("churn", {"x-account": f"acct-{i}"}, f"req-{i}")
        assert not keyed.missing_key
        assert keyed.variant == experiment.variant_for(f"acct-{i}")


def test_shadow_answers_with_control_and_mirrors_the_treatment_share() -> None:
    router = _router(route("churn", traffic=0.3, shadow=True))
    decisions = [router.decide("churn", _keyed(f"u{i}"), "r") for i in range(2_000)]
    assert {d.variant for d in decisions} == {CONTROL}
    mirrored = sum(d.shadow == "treatment" for d in decisions) / len(decisions)
    assert abs(mirrored - 0.3) < 0.05
    assert {d.shadow for d in decisions} == {None, "treatment"}


def test_an_unready_treatment_is_routed_to_control() -> None:
    router = _router(route("churn", traffic=0.5), frozenset({"treatment"}))
    assert {router.route("churn", f"u{i}") for i in range(500)} == {CONTROL}


@given(st.text(max_size=40), st.floats(0, 1))
def test_any_key_gets_one_variant_of_the_split(key: str, traffic: float) -> None:
    experiment = route("churn", traffic=traffic)
    router = _router(experiment)
    assert router.route("churn", key) == router.route("churn", key) == experiment.variant_for(key)
