"""A forced reload asked of one worker reaches every worker of the group (serving/group.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelreg.serving import group as group_module
from modelreg.serving.group import WorkerGroup


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def _asker_and_follower(tmp_path: Path) -> tuple[dict[str, object], list[str]]:
    asker = WorkerGroup(tmp_path, "host/a", pid=1)  # pid 1 lives: it stands for a worker
    follower = WorkerGroup(tmp_path, "host/b")  # this process
    asker.join()
    follower.join()
    checks: list[str] = []

    async def check() -> dict[str, str]:
        checks.append("b")
        return {"m": "reloaded"}

    following = asyncio.create_task(follower.follow(check))
    try:
        generation = asker.ask()
        asker.answer(generation, {"m": "unchanged"})
        answer = await asker.gather(generation, timeout=10)
    finally:
        following.cancel()
    assert answer.pending == []
    return dict(answer.answered), checks


def test_a_reload_asked_of_one_worker_is_checked_and_answered_by_the_others(
    tmp_path: Path,
) -> None:
    answered, checks = asyncio.run(_asker_and_follower(tmp_path))
    assert answered == {"host/a": {"m": "unchanged"}, "host/b": {"m": "reloaded"}}
    assert checks == ["b"]  # once, not on every probe


def test_a_worker_that_joins_later_does_not_redo_earlier_reloads(tmp_path: Path) -> None:
    first = WorkerGroup(tmp_path, "host/a", pid=1)
    first.join()
    first.ask()
    first.ask()
    late = WorkerGroup(tmp_path, "host/b")
    late.join()
    record = json.loads((tmp_path / f"{late.pid}.json").read_text())
    assert record == {"replica": "host/b", "generation": 2, "results": {}}


def test_a_gone_worker_is_not_waited_for_and_a_slow_one_is_named_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asker = WorkerGroup(tmp_path, "host/a", pid=1)
    asker.join()
    WorkerGroup(tmp_path, "host/gone", pid=_dead_pid()).join()
    WorkerGroup(tmp_path, "host/slow").join()  # alive (this process), never answers
    monkeypatch.setattr(group_module, "PROBE_SECONDS", 0.01)
    generation = asker.ask()
    asker.answer(generation, {"m": "reloaded"})
    answer = asyncio.run(asker.gather(generation, timeout=0.2))
    assert answer.answered == {"host/a": {"m": "reloaded"}}
    assert answer.pending == ["host/slow"]


def test_an_older_answer_never_replaces_a_newer_one(tmp_path: Path) -> None:
    worker = WorkerGroup(tmp_path, "host/a")
    worker.join()
    worker.answer(3, {"m": "reloaded"})
    worker.answer(2, {"m": "unchanged"})  # a slower, earlier check finishing last
    record = json.loads((tmp_path / f"{worker.pid}.json").read_text())
    assert (record["generation"], record["results"]) == (3, {"m": "reloaded"})


def test_a_worker_that_leaves_is_not_waited_for(tmp_path: Path) -> None:
    asker = WorkerGroup(tmp_path, "host/a", pid=1)
    asker.join()
    leaving = WorkerGroup(tmp_path, "host/b")
    leaving.join()
    leaving.leave()
    generation = asker.ask()
    asker.answer(generation, {})
    assert asyncio.run(asker.gather(generation, timeout=0.5)).pending == []


def test_generations_from_concurrent_askers_are_distinct(tmp_path: Path) -> None:
    askers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from modelreg.serving.group import "
                "WorkerGroup; g = WorkerGroup(Path(sys.argv[1]), 'x'); "
                "print(*(g.ask() for _ in range(50)))",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    seen = [int(n) for asker in askers for n in asker.communicate(timeout=60)[0].split()]
    assert sorted(seen) == list(range(1, 151))
