"""The governed lifecycle against real MLflow: aliases, mirrored stages, rollback, history."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from mlflow import MlflowClient

from modelreg.domain import Stage
from modelreg.errors import NothingToRollBackError, TransitionNotAllowedError
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration


def _production(client: MlflowClient, name: str) -> list[str]:
    return [mv.version for mv in client.get_latest_versions(name, stages=["Production"])]


def test_promotion_moves_alias_mirrors_stage_and_archives_previous(
    registry: Registry, quick_versions: Any, backend: Backend, model_name: str
) -> None:
    client = MlflowClient(backend.tracking_uri)
    quick_versions(model_name, 2)
    registry.promote(model_name, 1, "staging", reason="candidate")
    assert client.get_registered_model(model_name).aliases == {"staging": "1"}
    registry.promote(model_name, "1.0.0", Stage.PRODUCTION, reason="go")
    assert client.get_model_version_by_alias(model_name, "production").version == "1"
    assert _production(client, model_name) == ["1"]
    assert "staging" not in client.get_registered_model(model_name).aliases

    registry.promote(model_name, 2, "Staging")
    events = registry.promote(model_name, 2, "Production", reason="better")
    assert [(e.version, e.action, e.to_stage) for e in events] == [
        (1, "auto_archive", "Archived"),
        (2, "transition", "Production"),
    ]
    assert client.get_model_version_by_alias(model_name, "production").version == "2"
    assert _production(client, model_name) == ["2"]
    assert client.get_model_version(model_name, "1").current_stage == "Archived"
    assert client.get_model_version(model_name, "1").tags["modelreg.stage"] == "Archived"
    assert all(e.actor == "alice" for e in events)


def test_models_uri_with_stage_still_resolves_for_old_clients(
    registry: Registry, quick_versions: Any, model_name: str
) -> None:
    import mlflow

    quick_versions(model_name, 1)
    registry.promote(model_name, 1, "Staging")
    registry.promote(model_name, 1, "Production")
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/Production")
    assert model.metadata.run_id
    assert mlflow.pyfunc.load_model(f"models:/{model_name}@production").metadata.run_id


def test_disallowed_transition_changes_nothing(
    registry: Registry, quick_versions: Any, backend: Backend, model_name: str
) -> None:
    client = MlflowClient(backend.tracking_uri)
    quick_versions(model_name, 1)
    registry.promote(model_name, 1, "Archived")
    before = registry.history(model_name).events
    with pytest.raises(TransitionNotAllowedError, match="from Archived it may go to: Staging"):
        registry.promote(model_name, 1, "Production")
    assert registry.history(model_name).events == before
    mv = client.get_model_version(model_name, "1")
    assert mv.current_stage == "Archived"
    assert client.get_registered_model(model_name).aliases == {}


def test_rollback_and_history_at_time(
    registry: Registry, quick_versions: Any, backend: Backend, model_name: str
) -> None:
    client = MlflowClient(backend.tracking_uri)
    quick_versions(model_name, 3)
    with pytest.raises(NothingToRollBackError):
        registry.rollback(model_name)
    for version in (1, 2):
        registry.promote(model_name, version, "Staging")
        registry.promote(model_name, version, "Production")
    time.sleep(0.05)
    with_v2 = datetime.now(UTC)
    time.sleep(0.05)
    registry.promote(model_name, 3, "Staging")
    registry.promote(model_name, 3, "Production")

    events = registry.rollback(model_name, reason="p99 latency doubled")
    assert [(e.version, e.to_stage) for e in events] == [(3, "Archived"), (2, "Production")]
    assert all(e.reason == "p99 latency doubled" for e in events)
    assert client.get_model_version_by_alias(model_name, "production").version == "2"
    registry.rollback(model_name, to="1.0.0", reason="back to the first")
    assert registry.history(model_name).production == 1
    assert _production(client, model_name) == ["1"]

    then = registry.history(model_name, with_v2)
    assert then.production == 2
    assert then.production_semver == "1.0.1"
    assert then.stages[1] is Stage.ARCHIVED
    ids = [e.id for e in registry.history(model_name).events]
    assert ids == sorted(ids)


def test_doctor_repairs_a_seeded_double_production(
    registry: Registry, quick_versions: Any, backend: Backend, model_name: str
) -> None:
    client = MlflowClient(backend.tracking_uri)
    quick_versions(model_name, 3)
    registry.promote(model_name, 1, "Staging")
    registry.promote(model_name, 1, "Production")
    # Someone bypasses modelreg: a second native Production and a hand-moved alias.
    client.transition_model_version_stage(model_name, "2", "Production")
    client.set_registered_model_alias(model_name, "production", "3")

    drifts = [d for d in registry.doctor() if d.name == model_name]
    kinds = {(d.kind, d.version) for d in drifts}
    assert ("native stage", 2) in kinds
    assert ("alias production", 3) in kinds

    fixed = [d for d in registry.doctor(fix=True, actor="ops") if d.name == model_name]
    assert fixed and all(d.fixed for d in fixed)
    assert [d for d in registry.doctor() if d.name == model_name] == []
    assert client.get_model_version_by_alias(model_name, "production").version == "1"
    assert client.get_model_version(model_name, "2").current_stage == "None"
    assert _production(client, model_name) == ["1"]
    repairs = [e for e in registry.history(model_name).events if e.action == "repair"]
    assert repairs and all(e.actor == "ops" for e in repairs)
