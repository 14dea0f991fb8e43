"""Who acts: one rule for the CLI and the API, the credential cache, the system actor.

MLflow's basic-auth app is stood in for by a table of passwords (``_MlflowUsers``):
what is tested here is the rule applied to its answers. The answers of a real
MLflow are covered by tests/integration/test_governance_auth.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelreg.api.app import create_app
from modelreg.cli import main
from modelreg.errors import AuthenticationError, ConflictError, PermissionDeniedError
from modelreg.policy import Permission
from modelreg.registry import SYSTEM, Registry
from modelreg.registry.access import CREDENTIALS_TTL_SECONDS, CredentialCache, Credentials
from modelreg.settings import Settings

SERVICE = ("modelreg-svc", "service-password")


class _MlflowUsers:
    """Stands in for MLflow's ``users/current``: ``(user, is_admin)`` or None when refused."""

    def __init__(self) -> None:
        self.passwords = {"carol": "old", "bob": "bob-password", SERVICE[0]: SERVICE[1]}
        self.asked = 0

    def current_user(self, username: str, password: str) -> tuple[str, bool] | None:
        self.asked += 1
        if self.passwords.get(username) != password:
            return None
        return username, username == SERVICE[0]

    def close(self) -> None:
        """The registry closes its gateway; nothing to release here."""


def _check(users: _MlflowUsers, cache: CredentialCache, username: str, password: str) -> str:
    return cache.verify(Credentials(username, password), users.current_user)[0]


def test_a_refusal_drops_every_cached_password_of_the_user() -> None:
    users = _MlflowUsers()
    cache = CredentialCache()
    assert _check(users, cache, "carol", "old") == "carol"
    assert _check(users, cache, "carol", "old") == "carol"
    assert users.asked == 1  # the second answer came from the cache
    users.passwords["carol"] = "new"  # changed in MLflow
    with pytest.raises(AuthenticationError):
        _check(users, cache, "carol", "guess")
    with pytest.raises(AuthenticationError):
        _check(users, cache, "carol", "old")  # no longer trusted from the cache
    assert _check(users, cache, "carol", "new") == "carol"


def test_entries_expire() -> None:
    users = _MlflowUsers()
    clock = [1000.0]
    cache = CredentialCache(clock=lambda: clock[0])
    _check(users, cache, "carol", "old")
    clock[0] += CREDENTIALS_TTL_SECONDS + 1
    _check(users, cache, "carol", "old")
    assert users.asked == 2
    assert CREDENTIALS_TTL_SECONDS <= 15


def test_expired_entries_are_dropped_as_new_ones_come() -> None:
    users = _MlflowUsers()
    clock = [1000.0]
    cache = CredentialCache(clock=lambda: clock[0])
    _check(users, cache, "carol", "old")
    clock[0] += CREDENTIALS_TTL_SECONDS / 2
    _check(users, cache, "bob", "bob-password")
    assert len(cache) == 2
    clock[0] += CREDENTIALS_TTL_SECONDS / 2 + 1  # carol's entry has expired, bob's not yet
    _check(users, cache, SERVICE[0], SERVICE[1])
    assert len(cache) == 2
    clock[0] += CREDENTIALS_TTL_SECONDS + 1
    _check(users, cache, "carol", "old")
    assert len(cache) == 1  # the cache holds the users active within the TTL, no more


@pytest.fixture
def users(monkeypatch: pytest.MonkeyPatch) -> _MlflowUsers:
    """Every Registry built in the test (the CLI's too) asks these users, not a server."""
    found = _MlflowUsers()
    monkeypatch.setattr("modelreg.registry.MlflowGateway", lambda *_args, **_kw: found)
    for name in (
        "MODELREG_AUTH",
        "MODELREG_USERNAME",
        "MODELREG_PASSWORD",
        "MODELREG_ACTOR",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    return found


def _cli_actor(home: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and, on success, the actor `modelreg policy show` reports."""
    code = main(["--home", str(home), *args, "policy", "show", "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out)["actor"] if code == 0 else captured.err


def _api_actor(home: Path, mode: str, **request: Any) -> tuple[int, str]:
    """Status and the actor (or message) the API's /api/v1/policy answers."""
    settings = Settings(
        home=home,
        auth=mode,
        username=SERVICE[0],
        password=SERVICE[1],
        api_runs_workers=False,
    )
    registry = Registry(settings)
    try:
        answer = TestClient(create_app(settings, registry)).get("/api/v1/policy", **request)
    finally:
        registry.close()
    body = answer.json()
    return answer.status_code, body["actor"] if answer.status_code == 200 else body["message"]


def test_the_cli_and_the_api_resolve_the_same_actor_under_mlflow_auth(
    users: _MlflowUsers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    claimed = {"X-Modelreg-Actor": "ann"}
    api = _api_actor(tmp_path, "mlflow", auth=("bob", "bob-password"), headers=claimed)
    monkeypatch.setenv("MODELREG_AUTH", "mlflow")
    monkeypatch.setenv("MODELREG_USERNAME", "bob")
    monkeypatch.setenv("MODELREG_PASSWORD", "bob-password")
    cli = _cli_actor(tmp_path, capsys, "--actor", "ann")
    assert api == (200, "bob")  # the claimed name is ignored by both
    assert cli == (0, "bob")

    monkeypatch.setenv("MODELREG_PASSWORD", "wrong")
    refused_cli = _cli_actor(tmp_path, capsys)
    refused_api = _api_actor(tmp_path, "mlflow", auth=("bob", "wrong"))
    assert refused_cli[0] == 7
    assert refused_api[0] == 401
    assert "MLflow refused the credentials of 'bob'" in refused_cli[1]
    assert "MLflow refused the credentials of 'bob'" in refused_api[1]
    assert _api_actor(tmp_path, "mlflow")[0] == 401  # no credentials at all


def test_the_cli_and_the_api_resolve_the_same_actor_without_auth(
    users: _MlflowUsers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = _api_actor(tmp_path, "none", headers={"X-Modelreg-Actor": "carol"})
    cli = _cli_actor(tmp_path, capsys, "--actor", "carol")
    assert api == (200, "carol")
    assert cli == (0, "carol")
    # Credentials are not asked for, and not asked about, without MLflow auth.
    assert _api_actor(tmp_path, "none", auth=("bob", "wrong")) == (200, "anonymous")
    assert users.asked == 0


def test_a_registry_acts_as_itself_unless_told_otherwise(
    users: _MlflowUsers, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, auth="mlflow", username="bob", password="bob-password")
    registry = Registry(settings)
    rule = registry.access
    assert rule.actor_name(None) == rule.actor() == "bob"
    with pytest.raises(AuthenticationError, match="cannot act as 'ann'"):
        rule.actor_name("ann")
    # modelreg's own work is neither a name nor None, and passes without a role check.
    rule.authorize_caller(SYSTEM, Permission.ADMINISTER, "repair")
    with pytest.raises(AuthenticationError, match="cannot act as"):
        rule.authorize_caller("ann", Permission.READ, "read")
    registry.close()


def test_only_an_admin_replaces_the_policy_and_anyone_writes_the_first(
    users: _MlflowUsers, tmp_path: Path
) -> None:
    registry = Registry(Settings(home=tmp_path, actor="ann"))
    first = registry.init_policy()
    assert first.actor == "ann"
    assert first.role == "admin"
    assert first.source == str(tmp_path / "policy.toml")
    with pytest.raises(ConflictError, match="--force"):
        registry.init_policy()
    # bob gets the starter's default role, approver: he may not rewrite the rules.
    with pytest.raises(PermissionDeniedError, match="bob may not write the policy"):
        registry.init_policy(force=True, actor="bob")
    assert registry.policy().access.role_of("ann").value == "admin"
    assert registry.init_policy(force=True).actor == "ann"
    registry.close()
