"""Verifying against a manifest hashes once: comparing manifests says what re-hashing says."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.integrity import build_manifest, verify
from modelreg.registry.artifacts import differences

_NAMES = st.sampled_from(["MLmodel", "model.skops", "conda.yaml", "data/a.bin", "data/b.bin"])
_FILES = st.dictionaries(_NAMES, st.binary(max_size=8), max_size=5)


def _write(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


@settings(max_examples=60, deadline=None)
@given(recorded=_FILES, downloaded=_FILES)
def test_differences_equal_what_integrity_verify_reports(
    tmp_path_factory: pytest.TempPathFactory,
    recorded: dict[str, bytes],
    downloaded: dict[str, bytes],
) -> None:
    base = tmp_path_factory.mktemp("v")
    expected = build_manifest(_write(base / "recorded", recorded))
    actual_dir = _write(base / "downloaded", downloaded)
    assert differences(expected, build_manifest(actual_dir)) == verify(actual_dir, expected)


def test_a_changed_a_missing_and_an_unexpected_file_are_named(tmp_path: Path) -> None:
    expected = build_manifest(_write(tmp_path / "a", {"MLmodel": b"1", "model.skops": b"2"}))
    actual = build_manifest(_write(tmp_path / "b", {"MLmodel": b"changed", "extra.txt": b""}))
    assert differences(expected, actual) == [
        "modified: MLmodel",
        "unexpected: extra.txt",
        "missing: model.skops",
    ]
    assert differences(expected, expected) == []
