"""The dashboard under MLflow auth: log-in with an MLflow password, roles as for the API.

The MLflow server with basic auth and its users are the fixtures of
``tests/integration/test_governance_auth.py``, reused as they are.
"""

from __future__ import annotations

import pytest
from dashboard_helpers import Browser, csrf_of
from fastapi.testclient import TestClient
from registry_helpers import production
from test_governance_auth import PASSWORDS, auth_mlflow, secured, service_env, version

from modelreg.api.app import create_app
from modelreg.domain import Action
from modelreg.registry import Registry

pytestmark = pytest.mark.integration

__all__ = ["auth_mlflow", "secured", "service_env", "version"]


def _log_in(client: TestClient, user: str, password: str) -> TestClient:
    form = client.get("/ui/login")
    assert 'type="password"' in form.text
    return client.post(
        "/ui/login",
        data={"csrf_token": csrf_of(form.text), "username": user, "password": password},
        follow_redirects=False,
    )


def test_log_in_checks_the_mlflow_password_and_roles_apply(
    secured: Registry, version: int, model_name: str
) -> None:
    secured.request(model_name, version, comment="ready", actor="connie")
    app = create_app(secured.settings, secured)

    wrong = _log_in(TestClient(app), "bob", "not-his-password")
    assert wrong.status_code == 401
    assert "MLflow refused" in wrong.text

    victor = Browser(TestClient(app))
    assert _log_in(victor.client, "victor", PASSWORDS["victor"]).status_code == 303
    victor.token = csrf_of(victor.client.get("/ui/approvals").text)
    path = f"/ui/models/{model_name}/versions/{version}/approve"
    assert victor.post(path).status_code == 403

    bob = Browser(TestClient(app))
    assert _log_in(bob.client, "bob", PASSWORDS["bob"]).status_code == 303
    bob.token = csrf_of(bob.client.get("/ui/approvals").text)
    assert bob.post(path, comment="ok").status_code == 303
    approvals = [e for e in secured.history(model_name).events if e.action is Action.APPROVE]
    assert [(e.actor, e.reason) for e in approvals] == [("bob", "ok")]
    assert production(secured, model_name) == version
