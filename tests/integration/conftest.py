"""Fixtures shared by the registry integration tests: a facade, quick versions, tiny models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from registry_helpers import create_versions, labels, training_frame, write_policy
from sklearn.tree import DecisionTreeClassifier

from modelreg.registry import Registry
from services import Backend


@pytest.fixture
def registry(mlflow_env: Backend, tmp_path: Path) -> Iterator[Registry]:
    """The facade on the parametrised backend, acting as alice; MLflow's fluent API points there."""
    backend = mlflow_env
    reg = Registry.connect(backend.tracking_uri, backend.ledger_uri, actor="alice", home=tmp_path)
    yield reg
    reg.close()


@pytest.fixture
def register_tree(registry: Registry, model_name: str) -> Callable[..., Any]:
    """Register a DecisionTree (a skops 'untrusted' type) through modelreg with full lineage."""

    def register(
        seed: int = 0, depth: int = 3, columns: list[str] | None = None, **options: Any
    ) -> Any:
        frame = training_frame(seed, columns=columns)
        model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(frame, labels(frame))
        with mlflow.start_run():
            mlflow.log_metric("test_auc", 0.8 + depth / 100)
            return registry.register(model, name=model_name, training_data=frame, **options)

    return register


@pytest.fixture
def quick_versions(backend: Backend, registry: Registry) -> Callable[[str, int], list[int]]:
    """``create_versions`` bound to the parametrised backend."""
    return lambda name, count: create_versions(backend, registry, name, count)


@pytest.fixture
def governed(registry: Registry) -> Registry:
    """The registry (acting as alice) under the course's starter policy."""
    write_policy(registry)
    return registry


Register = Callable[..., int]


@pytest.fixture
def register_auc(governed: Registry, model_name: str) -> Register:
    """Register a tree whose run logs ``test_auc`` and ``data_version``; return its number."""

    def register(auc: float, *, data_version: str | None = "2026-11", seed: int = 0) -> int:
        frame = training_frame(seed)
        model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(frame, labels(frame))
        with mlflow.start_run():
            mlflow.log_metric("test_auc", auc)
            view = governed.register(
                model,
                name=model_name,
                training_data=frame,
                data_version=data_version,
                description=f"tree with test_auc {auc}",
            )
        return int(view.version)

    return register
