"""Production identity: MLflow's basic-auth app authenticates users, modelreg enforces roles.

One MLflow server runs with ``--app-name basic-auth`` and default permission
READ. modelreg acts in MLflow as the service account (the MLflow admin); users
authenticate with their own MLflow passwords. The tests show that nobody
without the right role can approve, promote or roll back through the API or
the CLI, and that ordinary users cannot move aliases or stages in MLflow itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from fastapi.testclient import TestClient
from registry_helpers import labels, production, training_frame, write_policy
from sklearn.tree import DecisionTreeClassifier

from modelreg.api.app import create_app
from modelreg.cli import main
from modelreg.errors import InvalidInputError
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.stack import Stack, StackConfig, free_port
from services import ServiceProcess, start_mlflow

pytestmark = pytest.mark.integration

SERVICE = ("modelreg-svc", "service-password-123")
PASSWORDS = {
    "alice": "alice-password-123",
    "bob": "bob-password-1234",
    "connie": "connie-password-12",
    "victor": "victor-password-12",
}


def write_auth_ini(workdir: Path) -> Path:
    """MLflow's basic-auth config: default permission READ, modelreg's service account admin."""
    config = workdir / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{workdir / 'auth.db'}\n"
        f"admin_username = {SERVICE[0]}\n"
        f"admin_password = {SERVICE[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return config


@pytest.fixture(scope="module")
def auth_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MLflow with basic auth, default permission READ; users alice, bob, connie, victor."""
    workdir = tmp_path_factory.mktemp("mlflow-auth")
    config = write_auth_ini(workdir)
    process: ServiceProcess
    process, uri = start_mlflow(
        "mlflow-auth",
        workdir,
        backend_store_uri=f"sqlite:///{workdir / 'mlflow.db'}",
        artifacts_destination=str(workdir / "artifacts"),
        env={
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key",
        },
        app_name="basic-auth",
    )
    try:
        for user, password in PASSWORDS.items():
            created = httpx.post(
                f"{uri}/api/2.0/mlflow/users/create",
                json={"username": user, "password": password},
                auth=SERVICE,
                timeout=30,
            )
            assert created.status_code == 200, created.text
        yield uri
    finally:
        process.stop()


@pytest.fixture
def service_env(auth_mlflow: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process talks to MLflow as modelreg's service account, as a deployment would."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", SERVICE[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SERVICE[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_mlflow)
    # Each test opens its own ledger beside the one MLflow server the module shares.
    monkeypatch.setenv("MODELREG_ALLOW_NEW_LEDGER", "1")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(auth_mlflow)
    yield auth_mlflow
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def secured(service_env: str, tmp_path: Path) -> Iterator[Registry]:
    """A registry in auth mode under the starter policy (alice approver, victor viewer ...)."""
    settings = Settings(
        tracking_uri=service_env,
        ledger_uri=f"sqlite:///{tmp_path / 'ledger.db'}",
        home=tmp_path,
        auth="mlflow",
        actor=SERVICE[0],
    )
    registry = Registry(settings)
    write_policy(registry)
    yield registry
    registry.close()


@pytest.fixture
def version(secured: Registry, model_name: str) -> int:
    """A version registered through modelreg by alice, passing every starter gate."""
    frame = training_frame()
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(frame, labels(frame))
    with mlflow.start_run():
        mlflow.log_metric("test_auc", 0.9)
        view = secured.register(
            model,
            name=model_name,
            training_data=frame,
            data_version="2026-11",
            description="tree",
            actor="alice",
        )
    return view.version


def basic(user: str) -> tuple[str, str]:
    """HTTP Basic credentials of ``user``."""
    return (user, PASSWORDS[user])


@pytest.fixture
def api(secured: Registry) -> Iterator[TestClient]:
    """The API service in auth mode."""
    with TestClient(create_app(secured.settings, secured)) as client:
        yield client


def test_api_requires_mlflow_credentials_and_checks_roles(
    api: TestClient, secured: Registry, version: int, model_name: str
) -> None:
    base = f"/api/v1/models/{model_name}/versions/{version}"
    missing = api.get(f"/api/v1/models/{model_name}/versions")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    wrong = api.post(f"{base}/approve", auth=("bob", "not-his-password"))
    assert wrong.status_code == 401
    assert api.post(f"{base}/request", auth=basic("victor")).status_code == 403
    assert api.post(f"{base}/request", auth=basic("connie")).status_code == 200

    # A claimed actor header does not override who authenticated.
    claimed = api.post(f"{base}/approve", auth=basic("victor"), headers={"X-Modelreg-Actor": "bob"})
    assert claimed.status_code == 403
    assert "victor may not approve" in claimed.json()["message"]
    assert api.post(f"{base}/approve", auth=basic("alice")).status_code == 403  # she registered it
    promote = api.post(f"{base}/promote", json={"stage": "Production"}, auth=basic("bob"))
    assert promote.status_code == 403
    assert production(secured, model_name) is None

    approved = api.post(f"{base}/approve", json={"comment": "ok"}, auth=basic("bob"))
    assert approved.status_code == 200, approved.text
    assert approved.json()["outcome"] == "promoted"
    assert production(secured, model_name) == version
    rollback = api.post(f"/api/v1/models/{model_name}/rollback", json={}, auth=basic("connie"))
    assert rollback.status_code == 403
    history = api.get(f"/api/v1/models/{model_name}/history", auth=basic("victor")).json()
    approvals = [e for e in history["events"] if e["action"] == "approve"]
    assert [e["actor"] for e in approvals] == ["bob"]


def test_cli_authenticates_its_user(
    secured: Registry,
    version: int,
    model_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = secured.settings
    monkeypatch.setenv("MODELREG_AUTH", "mlflow")
    base = ["--ledger-uri", str(settings.ledger_uri), "--home", str(settings.home)]
    run: Callable[..., int] = lambda *args: main([*base, *args])  # noqa: E731

    monkeypatch.setenv("MODELREG_USERNAME", "bob")
    monkeypatch.setenv("MODELREG_PASSWORD", "wrong-password")
    assert run("approve", model_name, str(version)) == 7
    assert "MLflow refused the credentials of 'bob'" in capsys.readouterr().err

    monkeypatch.setenv("MODELREG_USERNAME", "connie")
    monkeypatch.setenv("MODELREG_PASSWORD", PASSWORDS["connie"])
    assert run("--actor", "ann", "request", model_name, str(version), "--stage", "production") == 0
    assert run("approve", model_name, str(version)) == 7
    assert "connie may not approve" in capsys.readouterr().err
    assert production(secured, model_name) is None

    monkeypatch.setenv("MODELREG_USERNAME", "bob")
    monkeypatch.setenv("MODELREG_PASSWORD", PASSWORDS["bob"])
    assert run("approve", model_name, str(version), "--comment", "reviewed") == 0
    assert production(secured, model_name) == version
    requested = [e for e in secured.history(model_name).events if e.action == "request"]
    assert [e.actor for e in requested] == ["connie"]  # --actor ann was ignored


def test_users_cannot_bypass_governance_through_mlflow(
    secured: Registry, version: int, model_name: str, service_env: str
) -> None:
    rest = f"{service_env}/api/2.0/mlflow"
    attempts = [
        (
            "post",
            "registered-models/alias",
            {"name": model_name, "alias": "production", "version": str(version)},
        ),
        (
            "post",
            "model-versions/transition-stage",
            {
                "name": model_name,
                "version": str(version),
                "stage": "Production",
                "archive_existing_versions": False,
            },
        ),
        (
            "post",
            "model-versions/set-tag",
            {"name": model_name, "version": str(version), "key": "approved_by", "value": "alice"},
        ),
    ]
    for user in ("alice", "bob", "victor"):
        for method, path, body in attempts:
            response = httpx.request(method, f"{rest}/{path}", json=body, auth=basic(user))
            assert response.status_code == 403, (user, path, response.text)
    reads = httpx.get(
        f"{rest}/model-versions/get",
        params={"name": model_name, "version": str(version)},
        auth=basic("victor"),
    )
    assert reads.status_code == 200  # everyone may still read
    assert production(secured, model_name) is None
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == SERVICE[0]


def test_modelreg_up_runs_the_production_identity_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_auth_ini(tmp_path)
    home = tmp_path / "home"
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    with pytest.raises(InvalidInputError, match="MLFLOW_TRACKING_USERNAME"):
        Stack(StackConfig(home=home, basic_auth_config=config))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", SERVICE[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SERVICE[1])
    stack = Stack(
        StackConfig(home=home, port=free_port(), api_port=free_port(), basic_auth_config=config)
    )
    with stack:
        api, mlflow_uri = stack.config.api_url, stack.config.tracking_uri
        assert httpx.get(f"{mlflow_uri}/api/2.0/mlflow/registered-models/search").status_code == 401
        assert httpx.get(f"{api}/api/v1/models").status_code == 401
        assert httpx.get(f"{api}/api/v1/models", auth=SERVICE).status_code == 200
        assert httpx.get(f"{api}/health").json()["mlflow"] == "ok"  # the service account works
    assert (home / "flask-secret").stat().st_mode & 0o077 == 0


def test_a_python_registry_acts_only_as_who_it_proved_to_be(
    secured: Registry, service_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelreg.errors import AuthenticationError, PermissionDeniedError

    def registry_of(user: str, password: str) -> Registry:
        # The service account's MLflow credentials are in the environment too: the
        # configured user wins, as it does for the CLI.
        return Registry(
            Settings(
                tracking_uri=service_env,
                ledger_uri=secured.settings.resolved_ledger_uri(),
                home=secured.settings.home,
                auth="mlflow",
                username=user,
                password=password,
            )
        )

    wrong = registry_of("victor", "not-his-password")
    with pytest.raises(AuthenticationError, match="refused the credentials"):
        wrong.sync(actor="ann")
    with pytest.raises(AuthenticationError):
        wrong.actor()

    victor = registry_of("victor", PASSWORDS["victor"])
    assert victor.actor() == "victor"
    with pytest.raises(AuthenticationError, match="cannot act as 'ann'"):
        victor.sync(actor="ann")
    with pytest.raises(PermissionDeniedError):
        victor.sync(actor="victor")  # himself: a viewer may not adopt
    # The service account (an MLflow admin) acts for the users it authenticated.
    assert secured.actor() == SERVICE[0]
    assert secured.role_of("alice").value == "approver"
    for registry in (wrong, victor):
        registry.close()


def test_who_could_have_registered_an_adopted_version_may_not_approve_it(
    secured: Registry, service_env: str, model_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from modelreg.errors import PermissionDeniedError

    # alice (an approver) registers a model with her own MLflow login while her run
    # claims to be someone else; modelreg adopts it with that claim as registrant.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["alice"])
    client = MlflowClient(service_env)
    experiment = client.create_experiment(f"{model_name}-exp")
    run = client.create_run(experiment, tags={"mlflow.user": "intern"})
    frame = training_frame()
    model = DecisionTreeClassifier(max_depth=2).fit(frame, labels(frame))
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=model_name,
            pip_requirements=["scikit-learn"],
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", SERVICE[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SERVICE[1])

    open_gates = (
        f"\n[models.{model_name}.gates]\nmetrics = []\nrequired_metadata = []\n"
        "require_description = false\nrequire_signature = false\n"
        "require_complete_lineage = false\n"
    )
    write_policy(secured, open_gates)
    secured.sync(model_name)
    assert secured.request(model_name, 1, actor="connie").outcome == "requested"
    with pytest.raises(PermissionDeniedError, match="unverified"):
        secured.approve(model_name, 1, actor="alice")
    assert secured.approve(model_name, 1, actor="bob").outcome == "promoted"
    adopt = next(e for e in secured.history(model_name).events if e.action == "adopt")
    assert adopt.details["registrant_verified"] is False
