"""Which models get pinned requirements instead of MLflow's inference: pure logic."""

from __future__ import annotations

import importlib.metadata

from modelreg.registration import known_requirements


def test_sklearn_only_models_get_the_pinned_stack() -> None:
    pinned = known_requirements(["sklearn.tree._tree.Tree", "numpy.dtype"])
    assert pinned is not None
    assert f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in pinned
    assert any(p.startswith("skops==") for p in pinned)
    assert known_requirements([]) == pinned


def test_any_other_type_leaves_requirements_to_mlflow() -> None:
    assert known_requirements(["sklearn.tree._tree.Tree", "mycompany.features.Scaler"]) is None
    assert known_requirements(["xgboost.sklearn.XGBClassifier"]) is None
