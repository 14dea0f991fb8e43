"""The course's workflow and faults reported against MLflow registries, on real servers.

Each test drives the registry facade (or its adapters) against the parametrised
MLflow backend and checks what MLflow and the ledger show afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from mlflow.models import infer_signature
from registry_helpers import create_versions, labels, production, training_frame, write_policy
from sklearn.linear_model import LogisticRegression

from modelreg.api.app import create_app
from modelreg.cli import main
from modelreg.errors import (
    GateFailedError,
    InvalidFilterError,
    InvalidNameError,
    LedgerMismatchError,
)
from modelreg.registry import DELETED_KIND, Registry
from modelreg.settings import Settings
from services import Backend

pytestmark = pytest.mark.integration


def _native_production(backend: Backend, name: str) -> list[str]:
    client = MlflowClient(backend.tracking_uri)
    return [mv.version for mv in client.get_latest_versions(name, stages=["Production"])]


def _course_version(name: str, *, auc: float, params: dict[str, str] | None = None) -> int:
    """Register a version the way the course does: plain MLflow, lineage as run params."""
    frame = training_frame(3)
    model = LogisticRegression().fit(frame, labels(frame))
    logged = {
        "C": "1.0",
        "data_version": "fraud-2026-11",
        "git_commit": "3f2c1a9b7d5e4f60718293a4b5c6d7e8f9012345",
        "git_branch": "main",
        **(params or {}),
    }
    with mlflow.start_run():
        mlflow.log_params(logged)
        mlflow.log_metric("test_auc", auc)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(frame, model.predict(frame)),
            registered_model_name=name,
            pip_requirements=["scikit-learn"],
        )
    version = int(info.registered_model_version)
    MlflowClient().update_model_version(name, str(version), description="weekly retrain")
    return version


# -- the course's workflow -----------------------------------------------------------


def test_production_from_none_passes_through_staging(
    registry: Registry, quick_versions: Any, backend: Backend, model_name: str
) -> None:
    quick_versions(model_name, 1)
    events = registry.promote(model_name, 1, "production", reason="as the course does")
    assert [(e.version, e.from_stage, e.to_stage) for e in events] == [
        (1, "None", "Staging"),
        (1, "Staging", "Production"),
    ]
    assert all(e.action == "transition" and e.reason == "as the course does" for e in events)
    assert _native_production(backend, model_name) == ["1"]
    assert production(registry, model_name) == 1


def test_a_policy_requiring_time_in_staging_refuses_the_one_step(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    write_policy(governed, f"\n[models.{model_name}.gates]\nmin_staging_minutes = 60\n")
    version = register_auc(0.9)
    with pytest.raises(GateFailedError, match="min_staging_minutes"):
        governed.promote(model_name, version, "production", actor="ann")
    history = governed.history(model_name)
    assert history.production is None
    assert history.stages[version] == "None"
    assert history.events[-1].action == "decline"
    # Staged, but not for an hour yet: still refused, and no override skips it.
    governed.promote(model_name, version, "staging", actor="ann")
    with pytest.raises(GateFailedError, match="time in Staging"):
        governed.promote(model_name, version, "production", actor="ann")
    assert governed.history(model_name).production is None


def test_an_admin_override_is_recorded_with_the_failing_gates(
    governed: Registry,
    register_auc: Callable[..., int],
    model_name: str,
    mlflow_env: Backend,
    capsys: pytest.CaptureFixture[str],
) -> None:
    version = register_auc(0.8)  # the starter policy wants test_auc >= 0.85
    events = governed.promote(model_name, version, "production", reason="hotfix", actor="ann")
    assert [e.action for e in events] == ["override", "transition", "transition"]
    failed = events[0].details["failed_gates"]
    assert failed == [
        {"gate": "metric test_auc", "required": "test_auc >= 0.85", "observed": "0.8"}
    ]
    assert "hotfix" in events[0].reason
    assert events[-1].details["override"] is True
    assert production(governed, model_name) == version

    # The CLI says so on stderr.
    second = register_auc(0.7, seed=1)
    home = governed.settings.home
    args = ["--tracking-uri", mlflow_env.tracking_uri, "--ledger-uri", mlflow_env.ledger_uri]
    args += ["--home", str(home), "--actor", "ann"]
    assert main([*args, "promote", model_name, str(second), "--stage", "production"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err
    assert "override" in err
    assert "test_auc" in err


def test_the_course_lineage_is_declared_and_passes_the_starter_policy(
    governed: Registry, mlflow_env: Backend, model_name: str
) -> None:
    version = _course_version(model_name, auc=0.9)
    governed.sync(model_name)
    view = governed.show(model_name, version)
    assert view.lineage_complete is True, view.lineage_missing
    assert view.lineage is not None
    assert view.lineage.git is not None
    assert view.lineage.git.source == "declared"
    assert view.lineage.git.branch == "main"
    assert view.lineage.git.dirty is None  # the params do not say; not "clean"
    assert [(d.kind, d.version) for d in view.lineage.data] == [("declared", "fraud-2026-11")]
    assert view.lineage.params["C"] == "1.0"
    assert view.lineage.environment is not None

    assert governed.validate(model_name, version, actor="connie").passed
    requested = governed.request(model_name, version, actor="connie")
    assert requested.outcome == "requested"
    approved = governed.approve(model_name, version, actor="carol", comment="holdout ok")
    assert approved.outcome == "promoted"
    assert production(governed, model_name) == version

    # The stricter rule wants a content fingerprint, which declared data is not.
    write_policy(governed, f"\n[models.{model_name}.gates]\nrequire_data_fingerprint = true\n")
    gates = {g.gate: g for g in governed.validate(model_name, version, actor="connie").gates}
    assert gates["data fingerprint"].passed is False
    assert gates["data fingerprint"].observed == "declared only or missing"


def test_a_commit_that_is_not_a_commit_is_not_lineage(
    registry: Registry, mlflow_env: Backend, model_name: str
) -> None:
    version = _course_version(model_name, auc=0.9, params={"git_commit": "unknown"})
    registry.sync(model_name)
    assert registry.show(model_name, version).lineage_missing == ["git commit"]


def test_show_json_carries_the_lineage_record(
    registry: Registry, mlflow_env: Backend, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    version = _course_version(model_name, auc=0.9)
    registry.sync(model_name)
    capsys.readouterr()  # MLflow prints where the run can be viewed
    base = ["--tracking-uri", mlflow_env.tracking_uri, "--ledger-uri", mlflow_env.ledger_uri]
    assert main([*base, "show", model_name, str(version), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    lineage = shown["lineage"]
    assert lineage["git"]["commit"].startswith("3f2c1a9b")
    assert lineage["data"][0]["version"] == "fraud-2026-11"
    assert lineage["params"]["data_version"] == "fraud-2026-11"
    assert lineage["environment"]["python"]


# -- faults from public reports ----------------------------------------------------


def test_values_with_quotes_and_wildcards_reach_mlflow_intact(
    registry: Registry, backend: Backend, mlflow_env: Backend
) -> None:
    tail = uuid4().hex[:8]
    names = [f"o'brien-{tail}", f'say "hi"-{tail}', f"50%_off-{tail}", f"50ab_off-{tail}"]
    for name in names:
        create_versions(backend, registry, name, 1)
    listed = {m.name for m in registry.models()}
    assert set(names) <= listed
    drifts = registry.doctor()
    assert not [d for d in drifts if d.name in names]
    for name in names:
        assert [v.name for v in registry.versions(name)] == [name]  # % and _ match themselves
        registry.promote(name, 1, "staging")

    client = MlflowClient(backend.tracking_uri)
    values = {names[0]: "it's", names[1]: 'say "x"', names[2]: "back\\slash", names[3]: "50%_x"}
    for name, value in values.items():
        client.set_model_version_tag(name, "1", "note", value)
    assert [v.name for v in registry.search(f'tags.note = "it\'s" and name = "{names[0]}"')] == [
        names[0]
    ]
    assert [v.name for v in registry.search("tags.note = 'say \"x\"'")] == [names[1]]
    assert [v.name for v in registry.search("tags.note = 'back\\\\slash'")] == [names[2]]
    assert [v.name for v in registry.search("tags.note = '50%_x'")] == [names[3]]
    with pytest.raises(InvalidFilterError, match="both"):
        registry.search("tags.note = 'it\\'s \"x\"'")


def test_names_mlflow_accepts_are_managed_or_reported(
    registry: Registry, backend: Backend, mlflow_env: Backend, tmp_path: Path
) -> None:
    tail = uuid4().hex[:8]
    spaced, cyrillic, dotted = f"fraud detection {tail}", f"модель-{tail}", f"a..b-{tail}"
    for name in (spaced, cyrillic, dotted):
        create_versions(backend, registry, name, 1, adopt=False)
    registry.sync()
    for name in (spaced, cyrillic):
        assert registry.show(name, 1).adopted
        registry.promote(name, 1, "production")
        assert registry.verify(name, 1)[0].ok
        assert registry.history(name).production == 1
    with TestClient(create_app(registry.settings, registry)) as api:
        shown = api.get(f"/api/v1/models/{spaced.replace(' ', '%20')}/versions/1")
        assert shown.status_code == 200, shown.text
        assert shown.json()["stage"] == "Production"

    # Not managed, so not adopted; doctor says why and goes on.
    try:
        assert registry.ledger.version_record(dotted, 1) is None
        with pytest.raises(InvalidNameError, match=r"\.\."):
            registry.versions(dotted)
        reported = [d for d in registry.doctor() if d.name == dotted]
        assert [(d.kind, d.repairable) for d in reported] == [("unmanageable name", False)]
    finally:
        # Other tests expect a registry without drift from doctor.
        MlflowClient(backend.tracking_uri).delete_registered_model(dotted)


def test_adoption_keeps_the_production_version_mlflow_serves(
    registry: Registry, backend: Backend, mlflow_env: Backend, model_name: str
) -> None:
    client = MlflowClient(backend.tracking_uri)
    create_versions(backend, registry, model_name, 2, adopt=False)
    client.transition_model_version_stage(model_name, "1", "Production")
    client.transition_model_version_stage(model_name, "2", "Production")
    assert _native_production(backend, model_name) == ["2"]

    registry.sync(model_name)
    history = registry.history(model_name)
    assert history.production == 2
    assert history.stages[1] == "Archived"
    first = next(e for e in history.events if e.version == 1)
    assert "kept that one" in first.reason

    registry.doctor(fix=True, actor="ops")
    assert _native_production(backend, model_name) == ["2"]
    assert production(registry, model_name) == 2
    assert client.get_model_version(model_name, "1").current_stage == "Archived"


def test_a_production_version_deleted_in_mlflow(
    registry: Registry, quick_versions: Any, backend: Backend, model_name: str
) -> None:
    client = MlflowClient(backend.tracking_uri)
    quick_versions(model_name, 2)
    registry.promote(model_name, 1, "production")
    registry.promote(model_name, 2, "production")
    client.delete_model_version(model_name, "2")

    reported = {d.kind: d for d in registry.doctor() if d.name == model_name}
    assert reported[DELETED_KIND].version == 2
    assert reported["alias production"].repairable is False
    assert "rollback" in reported["alias production"].note

    events = registry.rollback(model_name, reason="v2 was deleted", actor="ops")
    assert [(e.version, e.action, e.to_stage) for e in events] == [
        (2, "rollback", "Archived"),
        (1, "rollback", "Production"),
    ]
    assert production(registry, model_name) == 1
    assert _native_production(backend, model_name) == ["1"]
    assert client.get_model_version(model_name, "1").tags["modelreg.stage"] == "Production"

    fixed = [d for d in registry.doctor(fix=True, actor="ops") if d.name == model_name]
    assert [(d.kind, d.fixed) for d in fixed] == [(DELETED_KIND, True)]
    assert [d for d in registry.doctor() if d.name == model_name] == []
    assert registry.history(model_name).events[-1].action == "delete"


def test_doctor_names_unadopted_versions_the_right_way_round(
    registry: Registry, backend: Backend, mlflow_env: Backend, model_name: str
) -> None:
    create_versions(backend, registry, model_name, 1, adopt=False)
    try:
        [drift] = [d for d in registry.doctor() if d.name == model_name]
        assert (drift.kind, drift.expected, drift.actual) == (
            "unadopted",
            "not recorded",
            "registered",
        )
    finally:
        registry.sync(model_name)  # other tests expect a registry without drift


def test_an_empty_ledger_beside_adopted_versions_is_refused(
    registry: Registry, quick_versions: Any, backend: Backend, model_name: str, tmp_path: Path
) -> None:
    quick_versions(model_name, 1)
    other = tmp_path / "elsewhere"
    fresh = Registry.connect(
        backend.tracking_uri, f"sqlite:///{other / 'ledger.db'}", actor="bob", home=other
    )
    try:
        for read in (lambda: fresh.versions(model_name), fresh.models, fresh.sync):
            with pytest.raises(LedgerMismatchError) as refused:
                read()
            assert registry.ledger.location() in refused.value.message
        assert fresh.ledger.is_empty()
    finally:
        fresh.close()
    hint = "MODELREG_HOME=" if backend.ledger_uri.startswith("sqlite") else "MODELREG_LEDGER_URI="
    assert hint in refused.value.message

    settings = Settings(
        tracking_uri=backend.tracking_uri,
        ledger_uri=f"sqlite:///{other / 'ledger.db'}",
        home=other,
        allow_new_ledger=True,
    )
    allowed = Registry(settings)
    try:
        assert [v.adopted for v in allowed.versions(model_name)] == [False]
    finally:
        allowed.close()


def test_api_docs_work_without_internet(registry: Registry) -> None:
    with TestClient(create_app(registry.settings, registry)) as api:
        page = api.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower()
        assets = [part.split('"')[0] for part in page.text.split('src="')[1:]]
        assert assets, page.text
        for asset in assets:
            assert api.get(asset).status_code == 200, asset


def test_a_ledger_beside_versions_another_ledger_adopted_is_refused(
    registry: Registry, backend: Backend, mlflow_env: Backend, model_name: str, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other_uri = f"sqlite:///{other / 'ledger.db'}"
    forked = Registry(
        Settings(
            tracking_uri=backend.tracking_uri,
            ledger_uri=other_uri,
            home=other,
            allow_new_ledger=True,
        )
    )
    create_versions(backend, forked, model_name, 1)  # the newest adoption is the other's
    shared = Registry.connect(backend.tracking_uri, backend.ledger_uri, actor="x", home=tmp_path)
    try:
        with pytest.raises(LedgerMismatchError, match="other/ledger.db"):
            shared.models()
    finally:
        MlflowClient(backend.tracking_uri).delete_registered_model(model_name)
        for opened in (forked, shared):
            opened.close()
    again = Registry.connect(backend.tracking_uri, backend.ledger_uri, actor="x", home=tmp_path)
    try:
        again.models()  # the shared ledger is the adopter again
    finally:
        again.close()
