"""Serving config: the per-model compile mode, --compile overriding it, the cache budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelreg.errors import InvalidInputError
from modelreg.serving.config import (
    DEFAULT_CACHE_MAX_BYTES,
    build_config,
    load_config,
    single_model_config,
)


def test_compile_is_auto_unless_a_model_says_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "serving.toml"
    path.write_text('[[models]]\nname = "a"\n\n[[models]]\nname = "b"\ncompile = "off"\n')
    config = load_config(path)
    assert [m.compile for m in config.models] == ["auto", "off"]
    assert config.cache_max_bytes == DEFAULT_CACHE_MAX_BYTES == 10 * 1024**3
    # --compile overrides every model only when given.
    assert config.with_compile(None) is config
    assert [m.compile for m in config.with_compile("require").models] == ["require"] * 2


def test_the_flags_set_compile_and_the_cache_budget() -> None:
    config = single_model_config("a", compile="off", cache_max_bytes=1024)
    assert config.models[0].compile == "off"
    assert config.cache_max_bytes == 1024
    assert single_model_config("a").models[0].compile == "auto"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"models": [{"name": "a", "compile": "fast"}]}, "compile"),
        ({"models": [{"name": "a"}], "cache_max_bytes": 0}, "cache_max_bytes"),
    ],
)
def test_bad_values_are_refused(data: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem):
        build_config(data)
