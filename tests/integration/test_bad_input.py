"""Bad input from outside gives a clear error and changes nothing, through every adapter."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from modelreg.api.app import create_app
from modelreg.cli import main
from modelreg.errors import (
    InvalidFilterError,
    InvalidInputError,
    InvalidNameError,
    ModelNotFoundError,
    ModelregError,
    VersionNotFoundError,
)
from modelreg.registry import Registry
from modelreg.stack import free_port
from services import Backend

pytestmark = pytest.mark.integration

# MLflow refuses '/' and ':'; modelreg also control characters, backslashes, '..' and
# surrounding whitespace. Spaces, quotes and other scripts are names it manages.
BAD_NAMES = [
    "../etc/passwd",
    "a/../b",
    "..",
    "",
    "x" * 5000,
    "a\x00b",
    "a:b",
    " padded",
    "back\\slash",
    "tab\there",
]


@pytest.fixture
def seeded(registry: Registry, quick_versions: Any, model_name: str) -> str:
    quick_versions(model_name, 2)
    registry.promote(model_name, 1, "Staging")
    return model_name


def _snapshot(registry: Registry, backend: Backend, name: str) -> tuple[Any, ...]:
    client = MlflowClient(backend.tracking_uri)
    versions = client.search_model_versions(f"name = '{name}'")
    return (
        registry.history(name).events,
        sorted((mv.version, mv.current_stage, tuple(sorted(mv.tags.items()))) for mv in versions),
        client.get_registered_model(name).aliases,
    )


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_model_names_are_refused(registry: Registry, bad: str) -> None:
    with pytest.raises(InvalidNameError):
        registry.versions(bad)
    with pytest.raises(InvalidNameError):
        registry.promote(bad, 1, "Staging")


def test_unknown_model_and_version(registry: Registry, seeded: str) -> None:
    with pytest.raises(ModelNotFoundError, match="modelreg models"):
        registry.show("no-such-model", 1)
    with pytest.raises(VersionNotFoundError):
        registry.show(seeded, 99)
    with pytest.raises(VersionNotFoundError):
        registry.show(seeded, "9.9.9")
    for bad in ("0", "-1", "abc", "1" * 40, "1.2", "1.2.3.4"):
        with pytest.raises(InvalidInputError):
            registry.show(seeded, bad)


def test_refused_changes_leave_no_trace(registry: Registry, backend: Backend, seeded: str) -> None:
    before = _snapshot(registry, backend, seeded)
    attempts = [
        lambda: registry.promote(seeded, 1, "Live"),
        lambda: registry.promote(seeded, 2, "Live"),
        lambda: registry.promote(seeded, 99, "Staging"),
        lambda: registry.promote(seeded, 1, "Staging", reason="x" * 5000),
        lambda: registry.promote(seeded, 1, "Production", actor=" "),
        lambda: registry.rollback(seeded),
        lambda: registry.rollback(seeded, to="1.0.1"),
    ]
    for attempt in attempts:
        with pytest.raises(ModelregError):
            attempt()
    assert _snapshot(registry, backend, seeded) == before


@pytest.mark.parametrize(
    "text",
    [
        "",
        "stage =",
        "stage = 'Live'",
        "semver = 'one.two'",
        "metrics.auc > high",
        "params.x = 1 or params.y = 2",
        "foo = 1",
        "tags.team ~ 'x'",
        "version = 'x'",
        "stage = 'Production' and",
        "x" * 3000,
    ],
)
def test_malformed_filters_are_refused(registry: Registry, text: str) -> None:
    with pytest.raises(InvalidFilterError, match="invalid search filter"):
        registry.search(text)


def test_cli_gives_one_line_errors_and_exit_codes(
    mlflow_env: Backend, seeded: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    base = ["--tracking-uri", mlflow_env.tracking_uri, "--ledger-uri", mlflow_env.ledger_uri]
    cases = [
        (["show", "../x", "1"], 2, "invalid model name"),
        (["show", "nope", "1"], 3, "is not registered"),
        (["show", seeded, "42"], 3, "has no version"),
        (["promote", seeded, "1", "--stage", "Live"], 2, "unknown stage"),
        (["promote", seeded, "2", "--stage", "None"], 4, "not allowed"),
        (["search", "stage = 'Live'"], 2, "invalid search filter"),
        (["history", seeded, "--at", "yesterday"], 2, "invalid time"),
        (["promote", seeded, "1"], 2, "Missing option"),
    ]
    for args, code, message in cases:
        assert main([*base, *args]) == code, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) <= 3


def test_cli_reports_an_unreachable_server_cleanly(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    code = main(["--tracking-uri", closed, "--ledger-uri", f"sqlite:///{tmp_path}/l.db", "models"])
    err = capsys.readouterr().err
    assert code == 6
    assert "not reachable" in err
    assert "Traceback" not in err


def test_api_maps_errors_to_4xx(mlflow_env: Backend, seeded: str, tmp_path: Any) -> None:
    registry = Registry.connect(
        mlflow_env.tracking_uri, mlflow_env.ledger_uri, actor="api", home=tmp_path
    )
    with TestClient(create_app(registry.settings, registry)) as api:
        assert api.get("/api/v1/models/nope/versions").status_code == 404
        assert api.get("/api/v1/models/..%2F..%2Fetc/versions").status_code in (400, 404)
        assert api.get("/api/v1/models/%2e%2e/versions").status_code == 400
        bad_stage = api.post(f"/api/v1/models/{seeded}/versions/1/promote", json={"stage": "Live"})
        assert bad_stage.status_code == 400
        assert bad_stage.json()["error_code"] == "InvalidStageError"
        assert "Traceback" not in bad_stage.text
        assert (
            api.post(
                f"/api/v1/models/{seeded}/versions/2/promote", json={"stage": "None"}
            ).status_code
            == 409
        )
        assert api.post(f"/api/v1/models/{seeded}/versions/1/promote", json={}).status_code == 422
        assert (
            api.post(
                f"/api/v1/models/{seeded}/versions/1/promote", content=b"{not json"
            ).status_code
            == 422
        )
        assert api.get("/api/v1/search", params={"filter": "stage = 'Live'"}).status_code == 400
        assert (
            api.get(f"/api/v1/models/{seeded}/history", params={"at": "yesterday"}).status_code
            == 422
        )
        ok = api.post(
            f"/api/v1/models/{seeded}/versions/1/promote",
            json={"stage": "Production", "reason": "via API"},
            headers={"X-Modelreg-Actor": "carol"},
        )
        assert ok.status_code == 200
        assert ok.json()[-1]["actor"] == "carol"
        assert api.get(f"/api/v1/models/{seeded}/versions/1").json()["stage"] == "Production"
