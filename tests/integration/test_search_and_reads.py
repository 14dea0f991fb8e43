"""Search over tags, params, metrics, stage, semver ranges; every read command has --json."""

from __future__ import annotations

import json
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from modelreg.cli import main
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration


@pytest.fixture
def catalogue(registry: Registry, register_tree: Any, backend: Backend, model_name: str) -> str:
    register_tree(seed=0, depth=2)  # 1.0.0, test_auc 0.82
    register_tree(seed=0, depth=5)  # 1.1.0, test_auc 0.85
    register_tree(seed=1, depth=5)  # 1.1.1, test_auc 0.85
    register_tree(seed=1, depth=5, columns=["amount", "age"])  # 2.0.0
    MlflowClient(backend.tracking_uri).set_model_version_tag(model_name, "2", "team", "risk")
    registry.promote(model_name, 2, "Staging")
    registry.promote(model_name, 2, "Production")
    registry.promote(model_name, 3, "Staging")
    return model_name


def _found(registry: Registry, name: str, text: str) -> list[int]:
    return [v.version for v in registry.search(f"name = '{name}' and {text}")]


def test_search_answers_each_kind_of_clause(registry: Registry, catalogue: str) -> None:
    name = catalogue
    assert _found(registry, name, "stage = 'Production'") == [2]
    assert _found(registry, name, "stage != 'None'") == [2, 3]
    assert _found(registry, name, "semver = '1.x'") == [1, 2, 3]
    assert _found(registry, name, "semver = '1.1.x'") == [2, 3]
    assert _found(registry, name, "semver = '>=1.1.1,<3'") == [3, 4]
    assert _found(registry, name, "semver = '^1.0.0'") == [1, 2, 3]
    assert _found(registry, name, "semver = '2.0.0'") == [4]
    assert _found(registry, name, "tags.team = 'risk'") == [2]
    assert _found(registry, name, "params.max_depth = '5'") == [2, 3, 4]
    assert _found(registry, name, "metrics.test_auc > 0.83") == [2, 3, 4]
    assert _found(registry, name, "metrics.test_auc > 0.83 and stage = 'Staging'") == [3]
    assert _found(registry, name, "lineage = 'complete'") == [1, 2, 3, 4]
    assert _found(registry, name, "version >= 3") == [3, 4]
    assert [v.version for v in registry.search(f"name LIKE '{name[:6]}%' and version = 1")] == [1]


def test_read_commands_print_json(
    mlflow_env: Backend, catalogue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--tracking-uri", mlflow_env.tracking_uri, "--ledger-uri", mlflow_env.ledger_uri]
    name = catalogue

    def run(*args: str) -> Any:
        assert main([*base, *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    models = {m["name"]: m for m in run("models")}
    assert models[name]["production"] == 2
    assert models[name]["staging"] == 3
    assert models[name]["latest_semver"] == "2.0.0"
    assert [v["semver"] for v in run("versions", name)] == ["1.0.0", "1.1.0", "1.1.1", "2.0.0"]
    shown = run("show", name, "1.1.0")
    assert shown["stage"] == "Production"
    assert shown["aliases"] == ["production"]
    assert shown["params"]["max_depth"] == "5"
    assert shown["metrics"]["test_auc"] == pytest.approx(0.85)
    assert shown["digest"].startswith("sha256:")
    assert [v["version"] for v in run("search", f"name = '{name}' and stage = 'Staging'")] == [3]
    history = run("history", name)
    assert history["production"] == 2
    assert [e["action"] for e in history["events"]][-3:] == ["transition"] * 3
    lineage = run("lineage", name, "1")
    assert lineage["complete"] is True
    assert lineage["record"]["params"]["max_depth"] == "2"
    assert [r["ok"] for r in run("verify", name)] == [True] * 4
    # doctor exits 1 for drift anywhere in the shared registry; this model has none.
    assert main([*base, "doctor", "--json"]) in (0, 1)
    assert [d for d in json.loads(capsys.readouterr().out) if d["name"] == name] == []
    # Other test files share this MLflow and may leave plain-MLflow versions to adopt.
    assert [v for v in run("sync") if v["name"] == name] == []


def test_cli_changes_record_the_actor(
    mlflow_env: Backend, catalogue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--tracking-uri", mlflow_env.tracking_uri, "--ledger-uri", mlflow_env.ledger_uri]
    assert (
        main(
            [
                *base,
                "--actor",
                "bob",
                "promote",
                catalogue,
                "3",
                "--stage",
                "production",
                "--reason",
                "canary ok",
                "--json",
            ]
        )
        == 0
    )
    events = json.loads(capsys.readouterr().out)
    assert [(e["version"], e["to_stage"], e["actor"]) for e in events] == [
        (2, "Archived", "bob"),
        (3, "Production", "bob"),
    ]
    assert (
        main([*base, "--actor", "bob", "rollback", catalogue, "--reason", "alert", "--json"]) == 0
    )
    rolled = json.loads(capsys.readouterr().out)
    assert rolled[-1]["version"] == 2
    assert (
        mlflow.MlflowClient(mlflow_env.tracking_uri)
        .get_model_version_by_alias(catalogue, "production")
        .version
        == "2"
    )
