"""The loader in-process (against real services): content-addressed cache, verification first."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import unique_name

from integration.registry_helpers import create_versions, training_frame
from modelreg.errors import ModelNotReadyError, VersionNotFoundError
from modelreg.registry import Registry
from modelreg.serving.loader import ModelLoader, zero_row
from services import Backend


def _counting_downloads(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    download = registry.download

    def counted(name: str, version: int, dst: Path) -> Path:
        calls.append(version)
        return download(name, version, dst)

    monkeypatch.setattr(registry, "download", counted)
    return calls


@pytest.mark.integration
def test_cache_is_private_reused_and_repaired(
    backend: Backend, module_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique_name("loader")
    create_versions(backend, module_registry, name, 1)
    downloads = _counting_downloads(module_registry, monkeypatch)
    loader = ModelLoader(module_registry, tmp_path / "cache")

    first = loader.load(name, 1)
    digest = module_registry.show(name, 1).digest
    assert first.digest == digest
    assert first.path == tmp_path / "cache" / digest.removeprefix("sha256:")
    for path in (tmp_path / "cache", first.path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.path.name]
    first.warm_up()
    frame = training_frame(1, rows=3)
    assert len(first.predict(frame, None)) == 3

    assert loader.load(name, 1).path == first.path
    assert downloads == [1]

    # A cached copy that no longer matches its manifest is replaced, not used.
    (first.path / "MLmodel").write_text("flavors: {}\n")
    repaired = loader.load(name, 1)
    assert downloads == [1, 1]
    assert len(repaired.predict(frame, None)) == 3


@pytest.mark.integration
def test_unknown_versions_are_refused(
    backend: Backend, module_registry: Registry, tmp_path: Path
) -> None:
    name = unique_name("loader")
    create_versions(backend, module_registry, name, 1)
    loader = ModelLoader(module_registry, tmp_path / "cache")
    with pytest.raises(VersionNotFoundError):
        loader.load(name, 9)
    assert not any((tmp_path / "cache").glob("*"))


@pytest.mark.integration
def test_a_version_without_a_manifest_is_refused(
    backend: Backend, module_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique_name("loader")
    create_versions(backend, module_registry, name, 1)
    # Pretend adoption found nothing to adopt (e.g. the version is still uploading).
    monkeypatch.setattr(module_registry, "sync", lambda *_a, **_k: [])
    monkeypatch.setattr(module_registry.ledger, "version_record", lambda *_a: None)
    with pytest.raises(ModelNotReadyError, match="no manifest"):
        ModelLoader(module_registry, tmp_path / "cache").load(name, 1)


def test_zero_row_follows_the_column_schema() -> None:
    from mlflow.types import ColSpec, Schema

    schema = Schema(
        [
            ColSpec("double", "x"),
            ColSpec("long", "n"),
            ColSpec("string", "s"),
            ColSpec("boolean", "b"),
        ]
    )
    row: Any = zero_row(schema)
    assert row.to_dict(orient="records") == [{"x": 0.0, "n": 0, "s": "", "b": False}]
    assert str(row["n"].dtype) == "int64"
    assert zero_row(None) is None
