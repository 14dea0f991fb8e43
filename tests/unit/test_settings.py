"""Where modelreg finds its home when none is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelreg.settings import Settings, find_home_upwards


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("MODELREG_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_the_nearest_home_upwards_is_used(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = clean_env / "project"
    (project / ".modelreg").mkdir(parents=True)
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_home_upwards() == (project / ".modelreg").resolve()
    settings = Settings()
    assert settings.home == (project / ".modelreg").resolve()
    assert settings.resolved_ledger_uri().endswith("project/.modelreg/ledger.db")
    assert settings.stack_home() == settings.home


def test_without_one_the_per_user_home_is_used(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = clean_env / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = Settings()
    assert settings.home == clean_env / "xdg" / "modelreg"
    # `modelreg up` starts a new stack where it is run, as git init does.
    assert settings.stack_home() == Path(".modelreg")


def test_an_explicit_home_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".modelreg").mkdir()
    monkeypatch.chdir(clean_env)
    monkeypatch.setenv("MODELREG_HOME", str(clean_env / "chosen"))
    assert Settings().home == clean_env / "chosen"
    assert Settings().stack_home() == clean_env / "chosen"
    assert Settings(home=clean_env / "flag").home == clean_env / "flag"


def test_serving_options_keep_their_variable_names(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(clean_env)
    assert Settings().serving.reload_token is None
    assert Settings().serving.serve_config is None
    assert Settings().serving.worker_group is None
    monkeypatch.setenv("MODELREG_RELOAD_TOKEN", "a-reload-token-of-some-length")
    monkeypatch.setenv("MODELREG_SERVE_CONFIG", '{"models": [{"name": "churn"}]}')
    monkeypatch.setenv("MODELREG_WORKER_GROUP", str(clean_env / "group"))
    settings = Settings()
    assert settings.serving.reload_token == "a-reload-token-of-some-length"
    assert settings.serving.serve_config == {"models": [{"name": "churn"}]}
    assert settings.serving.worker_group == clean_env / "group"
    assert "a-reload-token" not in repr(settings)
    monkeypatch.setenv("MODELREG_RELOAD_TOKEN", "")  # empty: unset, as before
    assert Settings().serving.reload_token is None


def test_settings_travel_to_another_process_as_json(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(clean_env)
    monkeypatch.setenv("MODELREG_RELOAD_TOKEN", "a-reload-token-of-some-length")
    sent = Settings(
        home=clean_env / "home", tracking_uri="http://mlflow:5000", ledger_uri="sqlite:///x.db"
    )
    text = sent.model_dump_json()
    # What the receiving process has in its environment does not matter.
    monkeypatch.setenv("MODELREG_RELOAD_TOKEN", "another-token-of-some-length")
    monkeypatch.setenv("MODELREG_TRACKING_URI", "http://elsewhere:5000")
    received = Settings.model_validate_json(text)
    assert received == sent
    assert received.serving.reload_token == "a-reload-token-of-some-length"
    assert received.resolved_tracking_uri() == "http://mlflow:5000"
