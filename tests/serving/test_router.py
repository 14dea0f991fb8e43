"""Routing and slots keyed by (model, variant), without services: pure logic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from serving_helpers import slot

from modelreg.errors import NotFoundError
from modelreg.serving.router import DEFAULT_VARIANT, DefaultRouter
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
