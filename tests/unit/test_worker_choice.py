"""How many worker processes `modelreg serve` starts by default, and what it reads to decide."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.serving.config import (
    MAX_WORKERS,
    available_memory,
    cgroup_cpu_quota,
    cgroup_dirs,
    choose_workers,
)

GIB = 1024**3


def test_one_worker_per_core_when_memory_allows() -> None:
    choice = choose_workers(cpus=2, cpu_quota=None, available_bytes=int(21.3 * GIB))
    assert choice.workers == 2
    assert choice.reason == "2 workers (2 CPUs, 21.3 GiB available; --workers N to choose)"


def test_a_cpu_quota_and_scarce_memory_lower_the_count() -> None:
    assert choose_workers(cpus=8, cpu_quota=1.5, available_bytes=None).workers == 1
    choice = choose_workers(cpus=8, cpu_quota=None, available_bytes=GIB, per_worker_bytes=GIB // 2)
    assert choice.workers == 2
    assert "0.5 GiB per worker" in choice.reason


@given(
    cpus=st.integers(0, 512),
    quota=st.none() | st.floats(0.01, 512),
    available=st.none() | st.integers(0, 2**45),
    per_worker=st.integers(1, 2**33),
)
def test_the_count_respects_every_limit_and_is_at_least_one(
    cpus: int, quota: float | None, available: int | None, per_worker: int
) -> None:
    workers = choose_workers(
        cpus=cpus, cpu_quota=quota, available_bytes=available, per_worker_bytes=per_worker
    ).workers
    assert 1 <= workers <= MAX_WORKERS
    assert workers <= max(1, cpus)
    if quota is not None:
        assert workers <= max(1, int(quota))
    if available is not None:
        assert workers <= max(1, available // per_worker)


def cgroup_tree(tmp_path: Path, cpu: str, memory: str, used: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    leaf = root / "pod" / "box"
    leaf.mkdir(parents=True)
    (root / "pod" / "cpu.max").write_text(cpu)
    (leaf / "cpu.max").write_text("max 100000\n")
    (root / "pod" / "memory.max").write_text(memory)
    (root / "pod" / "memory.current").write_text(used)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text("0::/pod/box\n")
    return root, proc


def test_cgroup_v2_limits_of_any_ancestor_apply(tmp_path: Path) -> None:
    root, proc = cgroup_tree(tmp_path, "150000 100000\n", f"{4 * GIB}\n", f"{GIB}\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 1 kB\nMemAvailable: {64 * 1024 * 1024} kB\n")
    dirs = cgroup_dirs(root, proc)
    assert dirs == [root / "pod" / "box", root / "pod", root]
    assert cgroup_cpu_quota(dirs) == pytest.approx(1.5)
    assert available_memory(dirs, meminfo) == 3 * GIB


def test_no_limits_no_cgroup(tmp_path: Path) -> None:
    root, proc = cgroup_tree(tmp_path, "max 100000\n", "max\n", "0\n")
    dirs = cgroup_dirs(root, proc)
    assert cgroup_cpu_quota(dirs) is None
    assert available_memory(dirs, tmp_path / "no-meminfo") is None
    assert cgroup_dirs(root, tmp_path / "nowhere") == []
