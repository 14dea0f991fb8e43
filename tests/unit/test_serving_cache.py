"""prune_cache keeps the cache under its budget, least recently used first, never what is served."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from modelreg.serving import cache
from modelreg.serving.cache import mark_used, prune_cache

A, B, C = ("a" * 64, "b" * 64, "c" * 64)


def entry(cache: Path, digest: str, size: int, age: float, compiled: int = 0) -> Path:
    """An entry of ``size`` bytes last used ``age`` seconds ago (plus a compiled file)."""
    path = cache / digest
    path.mkdir(parents=True)
    (path / "model.pkl").write_bytes(b"x" * size)
    parts = [path]
    if compiled:
        (cache / f"{digest}.onnx").write_bytes(b"y" * compiled)
        parts.append(cache / f"{digest}.onnx")
    stamp = time.time() - age
    for part in parts:
        os.utime(part, (stamp, stamp))
    return path


def test_least_recently_used_go_first_with_their_derived_files(tmp_path: Path) -> None:
    entry(tmp_path, A, 100, age=300, compiled=50)
    entry(tmp_path, B, 100, age=200)
    entry(tmp_path, C, 100, age=100)
    removed = prune_cache(tmp_path, max_bytes=200, keep=())
    assert sorted(p.name for p in removed) == [A, f"{A}.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [B, C]


def test_what_is_served_stays_even_over_the_budget(tmp_path: Path) -> None:
    entry(tmp_path, A, 100, age=300)
    entry(tmp_path, B, 100, age=200)
    assert prune_cache(tmp_path, max_bytes=10, keep={A}) == [tmp_path / B]
    assert [p.name for p in tmp_path.iterdir()] == [A]


def test_marking_an_entry_used_protects_it(tmp_path: Path) -> None:
    old = entry(tmp_path, A, 100, age=300)
    entry(tmp_path, B, 100, age=200)
    mark_used(old)
    assert prune_cache(tmp_path, max_bytes=150, keep=()) == [tmp_path / B]


def test_under_budget_nothing_goes(tmp_path: Path) -> None:
    entry(tmp_path, A, 100, age=300)
    assert prune_cache(tmp_path, max_bytes=100, keep=()) == []
    assert prune_cache(tmp_path / "missing", max_bytes=0, keep=()) == []


def test_downloads_in_progress_stay_and_stale_ones_go(tmp_path: Path) -> None:
    fresh = tmp_path / ".download-fresh"
    stale = tmp_path / ".download-stale"
    for path in (fresh, stale):
        path.mkdir()
        (path / "part").write_bytes(b"z" * 100)
    hour_ago = time.time() - 3700
    os.utime(stale, (hour_ago, hour_ago))
    entry(tmp_path, A, 100, age=10)
    assert prune_cache(tmp_path, max_bytes=0, keep={A}) == [stale]
    assert fresh.exists()


def test_links_are_removed_never_followed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"p" * 1000)
    path = entry(cache, A, 10, age=100)
    (path / "link").symlink_to(outside, target_is_directory=True)
    (cache / f"{B}.onnx").symlink_to(outside / "precious")
    removed = prune_cache(cache, max_bytes=0, keep=())
    assert sorted(p.name for p in removed) == [A, f"{B}.onnx"]
    assert (outside / "precious").read_bytes() == b"p" * 1000


def test_other_files_are_neither_counted_nor_touched(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes(b"n" * 10_000)
    (tmp_path / "not-a-digest").mkdir()
    entry(tmp_path, A, 100, age=10)
    assert prune_cache(tmp_path, max_bytes=100, keep=()) == []
    assert (tmp_path / "notes.txt").exists()


def test_an_entry_that_cannot_be_removed_is_logged_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    entry(tmp_path, A, 100, age=300)
    entry(tmp_path, B, 100, age=200)
    rmtree = shutil.rmtree

    def refuse_a(path: Path) -> None:  # root removes anything: simulate a busy mount
        if Path(path).name == A:
            raise PermissionError(13, "Permission denied")
        rmtree(path)

    monkeypatch.setattr(cache.shutil, "rmtree", refuse_a)
    assert prune_cache(tmp_path, max_bytes=0, keep=()) == [tmp_path / B]
    assert "cannot remove" in caplog.text
