"""The worker processes of one server: a forced reload sent to any of them reaches all.

``modelreg serve`` runs one process per core behind one port, and the kernel
hands each connection to one of them, so ``POST /-/reload`` reaches a single
worker; the others would pick a promotion up only at their next poll (60 s
with the course's ``--poll-interval 60``). With a group directory shared by
the workers (made by ``modelreg serve``, or ``MODELREG_WORKER_GROUP`` under
another ASGI server), the worker that is asked bumps the group's generation,
checks its own slots, and waits for the others' answers; every worker probes
the generation every :data:`PROBE_SECONDS` and, when it has moved, checks
its slots at once (``force``, as the endpoint does) and writes its answer.

The directory holds ``generation`` (the number of reloads asked so far,
replaced atomically under an advisory lock) and one ``<pid>.json`` per
worker: its replica id, the last generation it answered and that check's
results by slot label. A file whose process is gone is not waited for.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("modelreg.serving")

PROBE_SECONDS = 0.2
"""How often each worker looks for a reload asked of another (a stat-sized file read)."""

ANSWER_SECONDS = 60.0
"""How long the asked worker waits for the others once its own check is done; a
worker loading a large model may need that long, and one that takes longer is
named as pending in the answer."""

Check = Callable[[], Awaitable[dict[str, str]]]
"""Checks this worker's slots now (force) and returns the results by slot label."""


@dataclass(frozen=True)
class GroupAnswer:
    """What the workers of a group did for one reload.

    ``answered``: replica id → results by slot label (``reloaded``,
    ``unchanged``, ``failed``, ``waiting``); ``pending``: replica ids of live
    workers that did not answer within :data:`ANSWER_SECONDS`.
    """

    answered: dict[str, dict[str, str]]
    pending: list[str] = field(default_factory=list)


class WorkerGroup:
    """One worker's membership in a group directory (see the module docstring).

    ``directory`` must exist and be shared by the group's processes only;
    ``replica`` is this worker's replica id (as the ledger names it).
    """

    def __init__(self, directory: Path, replica: str, *, pid: int | None = None) -> None:
        self.directory = directory
        self.replica = replica
        self.pid = pid if pid is not None else os.getpid()
        self._handled = 0
        self._answered = 0
        self._probe_failed = False

    @property
    def _generation_path(self) -> Path:
        return self.directory / "generation"

    @property
    def _answer_path(self) -> Path:
        return self.directory / f"{self.pid}.json"

    def join(self) -> None:
        """Take part from now on: reloads asked before this are not this worker's to do."""
        self._handled = self._answered = self.generation()
        self._write_answer(self._handled, {})

    def leave(self) -> None:
        """Stop taking part (the process is stopping): nobody waits for this worker."""
        self._answer_path.unlink(missing_ok=True)

    def generation(self) -> int:
        """The number of reloads asked of the group so far (0 before the first)."""
        try:
            return int(self._generation_path.read_text() or 0)
        except FileNotFoundError:
            return 0

    def ask(self) -> int:
        """Ask every worker to check now; return the reload's generation.

        This worker counts the generation as handled: its caller checks its
        own slots and then calls :meth:`answer` and :meth:`gather`.
        """
        with exclusive_lock(self.directory / "generation.lock"):
            generation = self.generation() + 1
            _replace(self._generation_path, str(generation))
        self._handled = max(self._handled, generation)
        return generation

    def answer(self, generation: int, results: dict[str, str]) -> None:
        """Record this worker's results for ``generation`` (never going back to an older one)."""
        if generation < self._answered:
            return
        self._answered = generation
        self._write_answer(generation, results)

    async def gather(self, generation: int, timeout: float = ANSWER_SECONDS) -> GroupAnswer:
        """Wait until every live worker answered ``generation`` or later, or ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            answered, pending = self._answers(generation)
            if not pending or time.monotonic() >= deadline:
                return GroupAnswer(answered, sorted(pending))
            await asyncio.sleep(PROBE_SECONDS / 2)

    async def follow(self, check: Check) -> None:
        """Run until cancelled: check at once whenever another worker asks for a reload."""
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            try:
                wanted = self.generation()
            except (OSError, ValueError) as exc:  # the directory went away: keep serving
                if not self._probe_failed:
                    log.warning("worker group %s cannot be read: %s", self.directory, exc)
                self._probe_failed = True
                continue
            self._probe_failed = False
            if wanted <= self._handled:
                continue
            self._handled = wanted
            log.info("reload asked of every worker (generation %d): checking now", wanted)
            try:
                results = await check()
                self.answer(wanted, results)
            except Exception:  # a bug here must not stop the loop; the asker names us pending
                log.exception("reload of generation %d failed in this worker", wanted)

    def _answers(self, generation: int) -> tuple[dict[str, dict[str, str]], list[str]]:
        answered: dict[str, dict[str, str]] = {}
        pending: list[str] = []
        for path in self.directory.glob("*.json"):
            try:
                record = json.loads(path.read_text())
                pid, replica, done = int(path.stem), record["replica"], record["generation"]
            except (OSError, ValueError, KeyError, TypeError):  # gone since the glob, or not ours
                continue
            if not _alive(pid):
                continue
            if done >= generation:
                answered[replica] = record["results"]
            else:
                pending.append(replica)
        return answered, pending

    def _write_answer(self, generation: int, results: dict[str, str]) -> None:
        record = {"replica": self.replica, "generation": generation, "results": results}
        _replace(self._answer_path, json.dumps(record))


def _replace(path: Path, text: str) -> None:
    """Write ``path`` so that a reader sees the old content or the new, never a part."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``path`` against other processes."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
