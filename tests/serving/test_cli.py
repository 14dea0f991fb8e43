"""`modelreg serve` refuses bad options and unknown models before starting a server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from serving_helpers import to_production, unique_name

from integration.registry_helpers import create_versions
from modelreg.cli import main
from modelreg.domain import Stage
from modelreg.registry import Registry
from modelreg.stack import free_port
from services import Backend


def test_serve_needs_a_model_or_a_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    assert "name a model to serve" in capsys.readouterr().err


def test_a_config_file_excludes_model_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serving.toml"
    config.write_text('[[models]]\nname = "a"\n')
    assert main(["serve", "--config", str(config), "--alias", "staging"]) == 2
    assert "drop --alias" in capsys.readouterr().err


def test_alias_and_version_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "churn", "--alias", "staging", "--version", "2"]) == 2
    assert "both alias and version" in capsys.readouterr().err


@pytest.mark.integration
def test_an_unknown_model_stops_serve_with_a_clear_message(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tracking-uri", backend.tracking_uri, "--ledger-uri", backend.ledger_uri]
    assert main([*argv, "--home", str(tmp_path), "serve", "no-such-model-here"]) == 3
    assert "'no-such-model-here' is not registered" in capsys.readouterr().err


@pytest.mark.integration
def test_a_model_without_production_suggests_version_or_alias(
    backend: Backend,
    module_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = unique_name("no-prod")
    create_versions(backend, module_registry, name, 2)
    module_registry.promote(name, 2, Stage.STAGING, reason="serving tests")
    argv = ["--tracking-uri", backend.tracking_uri, "--ledger-uri", backend.ledger_uri]
    assert main([*argv, "--home", str(tmp_path), "serve", name, "--port", str(free_port())]) == 3
    err = capsys.readouterr().err
    assert f"model {name!r} has no version with the alias 'production'" in err
    assert (
        "serve one with --version N or --alias NAME (versions: 1, 2; aliases: @staging = v2)" in err
    )


@pytest.mark.integration
def test_a_busy_port_is_a_conflict_not_a_missing_model(
    backend: Backend,
    module_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = unique_name("busy")
    create_versions(backend, module_registry, name, 1)
    to_production(module_registry, name, 1)
    argv = ["--tracking-uri", backend.tracking_uri, "--ledger-uri", backend.ledger_uri]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main([*argv, "--home", str(tmp_path), "serve", name, "--port", str(port)])
    assert code == 4  # ConflictError; 3 would say the model was not found
    assert f"port {port} is in use; pick another with --port" in capsys.readouterr().err
