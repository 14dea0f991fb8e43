"""Bad versions and changed artifacts: refused or skipped, reported, and never half-written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import mlflow
import pytest
from mlflow import MlflowClient
from registry_helpers import create_versions, overwrite_artifact, production

from modelreg.cli import main
from modelreg.errors import (
    ArtifactsNotFoundError,
    GateFailedError,
    IntegrityError,
    InvalidInputError,
    ModelregError,
    VersionNotFoundError,
)
from modelreg.mlflow_gateway import VersionInfo
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration

on_sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _tamper(backend: Backend, name: str, version: int, tmp_path: Path) -> None:
    forged = tmp_path / "MLmodel"
    forged.write_text("artifact_path: model\nflavors: {}\n")
    overwrite_artifact(backend, name, version, forged)


def _skips(registry: Registry, name: str | None = None) -> tuple[list[Any], list[str]]:
    skipped: list[str] = []

    def note(info: VersionInfo, exc: ModelregError) -> None:
        skipped.append(f"{info.name} v{info.version}: {exc.message}")

    return registry.sync(name, on_skip=note), skipped


# -- nothing changed ever reaches Production --------------------------------------------


def test_no_path_into_production_takes_changed_artifacts(
    governed: Registry,
    register_auc: Callable[..., int],
    backend: Backend,
    model_name: str,
    tmp_path: Path,
) -> None:
    first, second = register_auc(0.9), register_auc(0.91, seed=1)
    governed.promote(model_name, first, "production", actor="ann")
    governed.promote(model_name, second, "production", actor="ann")
    _tamper(backend, model_name, first, tmp_path)

    with pytest.raises(IntegrityError, match="modified: MLmodel"):
        governed.rollback(model_name, reason="back to v1", actor="alice")
    assert production(governed, model_name) == second
    history = governed.history(model_name)
    assert history.production == second
    assert history.events[-1].action == "decline"
    assert history.events[-1].details["refused"] == "rollback"

    # An admin's direct promotion cannot skip the digest gate either.
    third = register_auc(0.95, seed=2)
    _tamper(backend, model_name, third, tmp_path)
    with pytest.raises(GateFailedError, match="digest"):
        governed.promote(model_name, third, "production", actor="ann")
    assert production(governed, model_name) == second


@on_sqlite
def test_a_file_replaced_by_a_symlink_reads_as_tampering(
    registry: Registry,
    register_tree: Any,
    backend: Backend,
    model_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    view = register_tree()
    artifacts = Path(backend.ledger_uri.removeprefix("sqlite:///")).parent / "artifacts"
    model_id = view.source.removeprefix("models:/")
    [stored] = artifacts.glob(f"*/models/{model_id}/artifacts")
    target = next(p for p in stored.iterdir() if p.suffix in {".skops", ".pkl"})
    kept = target.read_bytes()
    target.unlink()
    target.symlink_to("/etc/hostname")
    try:
        [result] = registry.verify(model_name, 1)
        args = ["--tracking-uri", backend.tracking_uri, "--ledger-uri", backend.ledger_uri]
        code = main([*args, "verify", model_name, "1"])
    finally:
        target.unlink()
        target.write_bytes(kept)
    assert not result.ok
    assert result.problems[0].startswith(f"modified: {target.name}")
    assert code == 5, capsys.readouterr().err
    assert [r.ok for r in registry.verify(model_name, 1)] == [True]


# -- one bad version never stops adoption --------------------------------------------------


def test_versions_without_artifacts_or_a_valid_model_are_skipped(
    registry: Registry,
    backend: Backend,
    mlflow_env: Backend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tail = uuid4().hex[:8]
    missing, broken, good = f"a-missing-{tail}", f"b-broken-{tail}", f"c-good-{tail}"
    client = MlflowClient(backend.tracking_uri)
    with mlflow.start_run() as run:
        model_dir = tmp_path / "model"
        model_dir.mkdir()
        (model_dir / "MLmodel").write_text("flavors: [unclosed\n")
        mlflow.log_artifacts(str(model_dir), "model")
    for name, source in ((missing, "nothing-here"), (broken, "model")):
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run.info.run_id}/{source}", run.info.run_id)
    create_versions(backend, registry, good, 1, adopt=False)
    try:
        adopted, skipped = _skips(registry)
        assert [(v.name, v.version) for v in adopted if v.name.endswith(tail)] == [(good, 1)]
        reasons = {line.split(":")[0]: line for line in skipped}
        assert "cannot be read" in reasons[f"{missing} v1"]
        assert "MLmodel file is not valid" in reasons[f"{broken} v1"]

        # Asking for one of them names the real cause; the CLI warns and goes on.
        with pytest.raises(ArtifactsNotFoundError):
            registry.promote(missing, 1, "staging")
        args = ["--tracking-uri", backend.tracking_uri, "--ledger-uri", backend.ledger_uri]
        assert main([*args, "sync"]) == 0
        err = capsys.readouterr().err
        assert f"skipped {missing} v1" in err
        assert f"skipped {broken} v1" in err
    finally:
        for name in (missing, broken):
            client.delete_registered_model(name)


def test_a_refused_registration_leaves_nothing_behind(
    registry: Registry, backend: Backend, mlflow_env: Backend
) -> None:
    client = MlflowClient(backend.tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_text("not a model", "notes.txt")
    for source, error in (
        (f"runs:/{run.info.run_id}/../../etc", InvalidInputError),
        (f"runs:/{run.info.run_id}/notes", ArtifactsNotFoundError),
    ):
        name = f"refused-{uuid4().hex[:8]}"
        with pytest.raises(error):
            registry.register_uri(name, source)
        assert not client.search_registered_models(f"name = '{name}'"), source


def test_the_api_reports_its_background_sync(registry: Registry) -> None:
    from fastapi.testclient import TestClient

    from modelreg.api.app import create_app

    with TestClient(create_app(registry.settings, registry)) as api:
        health = api.get("/health").json()
        metrics = api.get("/metrics").text
    assert health["loops"]["background sync"]["healthy"] is True
    assert 'modelreg_api_loop_failures_total{loop="background sync"}' in metrics
    assert 'modelreg_api_loop_healthy{loop="background sync"} 1.0' in metrics


def test_under_a_policy_servers_follow_the_ledger_not_a_bypassed_alias(
    governed: Registry, register_auc: Callable[..., int], backend: Backend, model_name: str
) -> None:
    client = MlflowClient(backend.tracking_uri)
    first, second = register_auc(0.9), register_auc(0.91, seed=1)
    client.set_registered_model_alias(model_name, "production", str(second))
    with pytest.raises(VersionNotFoundError):
        governed.alias_version(model_name, "production")  # the ledger has no Production
    governed.promote(model_name, first, "production", actor="ann")
    assert governed.alias_version(model_name, "production") == first
    client.set_registered_model_alias(model_name, "production", str(second))
    assert governed.alias_version(model_name, "production") == first
    assert governed.alias_version(model_name, "production") == first  # logged once, still v1
    governed.repair(model_name)  # other tests expect a registry without drift
    assert governed.drift(model_name) == []
