"""Registration through modelreg and adoption of plain-MLflow versions, on both backends."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from registry_helpers import training_frame

from modelreg.errors import InvalidInputError, SemVerConflictError
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration


def test_register_records_semver_digest_and_complete_lineage(
    registry: Registry, register_tree: Any, backend: Backend, model_name: str, tmp_path: Path
) -> None:
    view = register_tree(data_version="2026-11", description="first cut")

    assert view.version == 1
    assert view.semver == "1.0.0"
    assert view.digest is not None and view.digest.startswith("sha256:")
    assert view.lineage_complete, view.lineage_missing
    assert view.description == "first cut"
    mv = MlflowClient(backend.tracking_uri).get_model_version(model_name, "1")
    assert mv.tags["modelreg.semver"] == "1.0.0"
    assert mv.tags["modelreg.digest"] == view.digest
    assert mv.tags["modelreg.stage"] == "None"

    lineage = registry.lineage(model_name, "1.0.0")
    assert lineage.complete and lineage.source == "modelreg"
    assert lineage.record is not None
    assert lineage.record.git is not None and lineage.record.git.commit
    assert lineage.record.params["max_depth"] == "3"
    assert lineage.record.data[0].rows == 120
    run = MlflowClient(backend.tracking_uri).get_run(view.run_id)
    assert run.data.tags["data_version"] == "2026-11"
    assert run.data.tags["modelreg.lineage.complete"] == "true"
    assert run.inputs.dataset_inputs, "training data is logged as an MLflow dataset input"
    logged = mlflow.artifacts.load_text(f"runs:/{view.run_id}/modelreg/lineage.json")
    assert json.loads(logged)["git"]["commit"] == lineage.record.git.commit
    # A pure sklearn model gets its pinned requirements without MLflow's slow inference.
    model_dir = registry.download(model_name, 1, tmp_path)
    pinned = (model_dir / "requirements.txt").read_text().split()
    assert f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in pinned
    assert f"skops=={importlib.metadata.version('skops')}" in pinned
    loaded = mlflow.pyfunc.load_model(str(model_dir))
    assert len(loaded.predict(training_frame(3).head(4))) == 4


def test_semver_bumps_follow_the_rules(register_tree: Any) -> None:
    assert register_tree(seed=0, depth=3).semver == "1.0.0"
    # same schema and params, new data: PATCH
    assert register_tree(seed=1, depth=3).semver == "1.0.1"
    # hyperparameters changed: MINOR
    assert register_tree(seed=1, depth=4).semver == "1.1.0"
    # a column removed from the input signature: MAJOR
    assert register_tree(seed=1, depth=4, columns=["amount", "age"]).semver == "2.0.0"


def test_explicit_semver_must_exceed_all_and_refusal_creates_nothing(
    registry: Registry, register_tree: Any, backend: Backend, model_name: str
) -> None:
    register_tree(semver="2.0.0")
    for bad in ("2.0.0", "1.9.9"):
        with pytest.raises(SemVerConflictError, match="highest is 2.0.0"):
            register_tree(semver=bad)
    with pytest.raises(InvalidInputError):
        register_tree(semver="2.x")
    assert [v.version for v in registry.versions(model_name)] == [1]
    assert (
        len(MlflowClient(backend.tracking_uri).search_model_versions(f"name='{model_name}'")) == 1
    )
    assert register_tree(semver="3.1.0").semver == "3.1.0"
    assert registry.show(model_name, "3.1.0").version == 2


def test_plain_mlflow_versions_are_adopted_by_sync(
    registry: Registry, quick_versions: Any, model_name: str
) -> None:
    numbers = quick_versions(model_name, 3)
    views = registry.versions(model_name)
    assert [v.version for v in views] == numbers
    assert [v.semver for v in views] == ["1.0.0", "1.0.1", "1.0.2"]
    assert all(v.adopted and v.digest for v in views)
    # the same artifacts, so the same digest
    assert len({v.digest for v in views}) == 1
    assert "training data" in views[0].lineage_missing
    history = registry.history(model_name)
    assert [e.action for e in history.events] == ["adopt"] * 3
    assert registry.sync(model_name) == []  # idempotent


def test_register_without_signature_source_is_refused(registry: Registry, model_name: str) -> None:
    from sklearn.tree import DecisionTreeClassifier

    with pytest.raises(InvalidInputError, match="signature is required"):
        registry.register(DecisionTreeClassifier(), name=model_name)


def test_cli_register_takes_a_logged_model_uri(
    registry: Registry, backend: Backend, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from registry_helpers import labels, training_frame
    from sklearn.linear_model import LogisticRegression

    from modelreg.cli import main

    frame = training_frame()
    with mlflow.start_run() as run:
        mlflow.log_params({"C": 1.0})
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(frame, labels(frame)),
            name="model",
            input_example=frame.head(2),
        )
    base = ["--tracking-uri", backend.tracking_uri, "--ledger-uri", backend.ledger_uri]
    for uri in (f"runs:/{run.info.run_id}/model", info.model_uri):
        assert main([*base, "register", model_name, uri, "--json"]) == 0, capsys.readouterr().err
    views = registry.versions(model_name)
    assert [v.semver for v in views] == ["1.0.0", "1.0.1"]
    assert all(v.run_id == run.info.run_id for v in views)
    assert main([*base, "register", model_name, "s3://elsewhere/model"]) == 2
    assert "unsupported model URI" in capsys.readouterr().err
    assert main([*base, "register", model_name, info.model_uri, "--semver", "1.0.0"]) == 4
    assert len(registry.versions(model_name)) == 2
