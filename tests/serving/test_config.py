"""The serving config: TOML files and `serve` flags, validated with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelreg.errors import InvalidInputError
from modelreg.serving.config import (
    DEFAULT_MAX_BODY_BYTES,
    RELOAD_TOKEN_ENV,
    load_config,
    single_model_config,
)
from modelreg.settings import Settings

TOKEN = "a-reload-token-of-some-length"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serving.toml"
    path.write_text(text)
    return path


def test_a_file_describes_several_models(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            f'reload_token = "{TOKEN}"\nmax_body_bytes = 1024\n'
            '[[models]]\nname = "churn"\npoll_interval = 60\n'
            '[[models]]\nname = "fraud"\nversion = 3\nmax_batch_size = 1\n'
            '[[models]]\nname = "spam"\nalias = "staging"\nmax_wait_ms = 0\n',
        )
    )
    churn, fraud, spam = config.models
    assert config.models[0].name == "churn"  # the default model
    assert (churn.alias, churn.version, churn.poll_interval) == ("production", None, 60)
    assert (fraud.alias, fraud.version, fraud.max_batch_size) == (None, 3, 1)
    assert (spam.reference, spam.max_wait_ms) == ("spam@staging", 0)
    assert config.max_body_bytes == 1024
    assert config.reload_token == TOKEN


def test_flags_build_a_one_model_config() -> None:
    config = single_model_config("churn", version=2, max_body_bytes=10)
    [model] = config.models
    assert (model.name, model.alias, model.version, model.poll_interval) == ("churn", None, 2, 1.0)
    assert (model.max_batch_size, model.max_wait_ms) == (64, 2.0)
    assert config.max_body_bytes == 10
    assert single_model_config("churn").max_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert config.reload_token is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "models: Field required"),
        ("models = []", "models: List should have at least 1 item"),
        ('[[models]]\nname = "a"\nalias = "production"\nversion = 2', "both alias and version"),
        ('[[models]]\nname = "a"\n[[models]]\nname = "a"', "a appear more than once"),
        ('[[models]]\nname = "../etc"', "models.0.name: invalid model name"),
        ('[[models]]\nname = "a"\npoll_interval = 0', "models.0.poll_interval"),
        ('[[models]]\nname = "a"\nmax_batch_size = 0', "models.0.max_batch_size"),
        ('[[models]]\nname = "a"\nbatch = 4', "models.0.batch: Extra inputs are not permitted"),
        ('reload_token = "short"\n[[models]]\nname = "a"', "reload_token"),
        ("[[models]\nname =", "is not valid TOML"),
    ],
)
def test_bad_files_are_refused_with_the_place_and_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match="serving config") as error:
        load_config(_write(tmp_path, text))
    assert message in error.value.message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read serving config"):
        load_config(tmp_path / "nope.toml")


def test_the_reload_token_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_env() -> str | None:
        return Settings().serving.reload_token

    monkeypatch.setenv(RELOAD_TOKEN_ENV, TOKEN)
    assert single_model_config("a").with_reload_token(from_env()).reload_token == TOKEN
    monkeypatch.setenv(RELOAD_TOKEN_ENV, "")
    assert single_model_config("a").with_reload_token(from_env()).reload_token is None
    monkeypatch.setenv(RELOAD_TOKEN_ENV, "short")
    with pytest.raises(InvalidInputError, match="reload_token"):
        single_model_config("a").with_reload_token(from_env())
    # The config file's own token wins over the environment's.
    own = single_model_config("a").updated(reload_token=TOKEN + "-own")
    assert own.with_reload_token(from_env()).reload_token == TOKEN + "-own"
