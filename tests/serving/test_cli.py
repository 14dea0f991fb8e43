"""`modelreg serve` refuses bad options and unknown models before starting a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelreg.cli import main
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
