"""Governance through the API and the CLI: roles, exit codes, JSON for CI steps.

The adapters only translate; what they call is covered on SQLite and on
PostgreSQL+S3 by test_governance_flow, so these run on SQLite alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from registry_helpers import production

from modelreg.api.app import create_app
from modelreg.cli import main
from modelreg.registry import Registry
from services import Backend, cli_argv

pytestmark = pytest.mark.integration
on_sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def api(governed: Registry) -> Iterator[TestClient]:
    """The API service over the governed registry, without authentication."""
    with TestClient(create_app(governed.settings, governed)) as client:
        yield client


def as_(actor: str) -> dict[str, str]:
    """Headers claiming ``actor`` (the embedded default has no passwords)."""
    return {"X-Modelreg-Actor": actor}


@on_sqlite
def test_api_enforces_roles_and_records_the_approver(
    api: TestClient, governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    version = register_auc(0.9)
    base = f"/api/v1/models/{model_name}/versions/{version}"
    gates = api.get(f"{base}/validate", headers=as_("victor")).json()
    assert gates["passed"] is True
    assert {g["gate"] for g in gates["gates"]} >= {"metric test_auc", "metadata data_version"}

    assert api.post(f"{base}/request", headers=as_("victor")).status_code == 403
    assert api.post("/api/v1/sync", headers=as_("victor")).status_code == 403
    opened = api.post(f"{base}/request", json={"comment": "ship it"}, headers=as_("connie"))
    assert opened.status_code == 200, opened.text
    assert opened.json()["outcome"] == "requested"

    for actor in ("victor", "connie"):
        refused = api.post(f"{base}/approve", headers=as_(actor))
        assert refused.status_code == 403
        assert refused.json()["error_code"] == "PermissionDeniedError"
    # Unidentified callers are viewers under the starter policy, whatever default_role says.
    anonymous = api.post(f"{base}/approve")
    assert anonymous.status_code == 403
    assert "viewer" in anonymous.json()["message"]
    approved = api.post(f"{base}/approve", headers=as_("carol"))
    promote = api.post(f"{base}/promote", json={"stage": "Production"}, headers=as_("bob"))
    assert promote.status_code == 403
    assert (
        api.post(
            f"/api/v1/models/{model_name}/rollback", json={}, headers=as_("connie")
        ).status_code
        == 403
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["outcome"] == "promoted"
    assert approved.json()["approvers"] == ["carol"]
    assert production(governed, model_name) == version

    policy_view = api.get("/api/v1/policy", params={"model": model_name}, headers=as_("victor"))
    assert policy_view.json()["role"] == "viewer"
    assert policy_view.json()["policy"]["approvals"]["required"] == 1


@on_sqlite
def test_api_refusals_are_4xx_and_write_nothing(
    api: TestClient, governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    version = register_auc(0.8)
    base = f"/api/v1/models/{model_name}/versions/{version}"
    low = api.post(f"{base}/request", headers=as_("connie"))
    assert low.status_code == 409
    assert "observed 0.8" in low.json()["message"]
    # A rejection without a reason is bad input (400), refused before anything is read.
    assert api.post(f"{base}/reject", json={"comment": ""}, headers=as_("bob")).status_code == 400
    assert api.post(f"{base}/reject", content=b"{", headers=as_("bob")).status_code == 422
    long = api.post(f"{base}/approve", json={"comment": "x" * 3000}, headers=as_("bob"))
    assert long.status_code == 422
    missing = api.post(f"/api/v1/models/{model_name}/versions/99/approve", headers=as_("bob"))
    assert missing.status_code == 404
    assert production(governed, model_name) is None


@on_sqlite
def test_cli_is_usable_as_a_ci_step(
    governed: Registry,
    register_auc: Callable[..., int],
    backend: Backend,
    model_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = governed.settings.home
    first = register_auc(0.86, seed=1)
    assert (
        main(cli_argv(backend, home, "--actor", "connie", "auto-promote", model_name, str(first)))
        == 0
    )
    capsys.readouterr()
    second = register_auc(0.87, seed=2)
    capsys.readouterr()  # MLflow prints run links while registering
    args = cli_argv(backend, home, "--actor", "connie", "auto-promote", model_name, str(second))
    assert main([*args, "--json"]) == 4
    declined = json.loads(capsys.readouterr().out)
    assert declined["outcome"] == "declined"
    assert declined["promoted"] is False
    failed = [g for g in declined["gates"] if not g["passed"]]
    assert [g["gate"] for g in failed] == ["auto-promotion test_auc"]

    assert main(cli_argv(backend, home, "validate", model_name, str(second), "--json")) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True

    assert (
        main(cli_argv(backend, home, "--actor", "victor", "approve", model_name, str(second))) == 7
    )
    assert "victor may not approve" in capsys.readouterr().err
    assert (
        main(cli_argv(backend, home, "request", model_name, str(second), "--stage", "staging")) == 2
    )
    assert "requests are for Production" in capsys.readouterr().err
    assert main(cli_argv(backend, home, "reject", model_name, str(second), "--comment", "x")) == 4
    assert "no open promotion request" in capsys.readouterr().err
    assert production(governed, model_name) == first


def test_policy_init_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(tmp_path), "--actor", "ann"]
    assert main([*home, "policy", "init"]) == 0
    assert (tmp_path / "policy.toml").exists()
    assert main([*home, "policy", "init"]) == 4  # never overwrites silently
    capsys.readouterr()
    assert main([*home, "policy", "show", "churn", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["role"] == "admin"
    assert shown["policy"]["gates"]["metrics"][0]["threshold"] == pytest.approx(0.85)
    (tmp_path / "policy.toml").write_text("[default.approvals]\nrequired = 'two'\n")
    assert main([*home, "policy", "show"]) == 2
    assert "default.approvals.required" in capsys.readouterr().err
