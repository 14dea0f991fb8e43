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
