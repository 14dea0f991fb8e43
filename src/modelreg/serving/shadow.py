"""Shadow scoring: treatments score mirrored copies of requests, off the request path.

In a shadow experiment control answers every request; the requests the split
gives a treatment are also handed to :class:`ShadowQueue`, whose few workers
score them on the treatment after the answer has gone. The queue is bounded:
when the treatment cannot keep up, mirrored requests are dropped and counted
(``modelreg_serving_shadow_dropped``) rather than slowing real traffic or
growing memory without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modelreg.experiments.definition import ExperimentRoute

log = logging.getLogger("modelreg.serving")


@dataclass(frozen=True)
class ShadowJob:
    """One mirrored request: the body as received and who it is for."""

    model: str
    variant: str
    route: ExperimentRoute
    body: bytes
    content_type: str | None
    request_id: str
    missing_key: bool


class ShadowQueue:
    """A bounded queue of :class:`ShadowJob` and ``concurrency`` workers running ``score``.

    ``score`` must not raise for bad input or a failing model (it records
    those itself); anything it does raise is logged and the worker goes on.
    ``on_drop`` is called for each job refused because the queue was full.
    """

    def __init__(
        self,
        score: Callable[[ShadowJob], Awaitable[None]],
        on_drop: Callable[[ShadowJob], None],
        *,
        capacity: int,
        concurrency: int,
    ) -> None:
        self._score = score
        self._on_drop = on_drop
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(capacity)
        self._concurrency = concurrency
        self._workers: list[asyncio.Task[None]] = []

    def offer(self, job: ShadowJob) -> bool:
        """Queue ``job`` without waiting; False (and counted) when the queue is full."""
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._on_drop(job)
            return False
        return True

    async def join(self) -> None:
        """Wait until every queued job has been scored (tests, shutdown)."""
        await self._queue.join()

    async def stop(self) -> None:
        """Stop the workers; jobs still queued are dropped (they answer nobody)."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._score(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a shadow failure must never stop the workers
                log.exception("shadow scoring of %s failed", job.request_id)
            finally:
                with contextlib.suppress(ValueError):
                    self._queue.task_done()
