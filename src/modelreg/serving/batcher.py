"""Adaptive micro-batching: concurrent scoring requests to one model merged into one predict call.

Most models cost nearly the same to call on one row as on sixty-four (a
RandomForest walks every tree either way, and MLflow's schema enforcement has
a fixed cost per call), so merging concurrent requests multiplies throughput.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelreg.serving.protocol import ScoringInput

Predict = Callable[[pd.DataFrame, dict[str, Any] | None], Any]


@dataclass
class _Request:
    item: ScoringInput
    future: asyncio.Future[Any]
    queued_at: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Merge concurrent requests to one model into batched ``predict`` calls.

    One worker task takes the oldest queued request and greedily adds every
    request already queued behind it, up to ``max_batch_size`` rows. Only when
    that batch is still small does it wait, at most ``max_wait_ms`` after the
    oldest request arrived, for more. ``predict`` runs in ``executor`` (a
    thread), so the event loop keeps accepting requests meanwhile, and those
    form the next batch.

    That greedy accumulation *during* predict is what makes the batching
    adaptive: under light load a request is predicted almost at once, alone;
    as load grows, more requests arrive while a predict runs, so batches grow
    by themselves exactly as fast as the model falls behind, and the fixed
    wait is rarely spent. Latency stays near one predict call and throughput
    rises with the batch size, without any tuning.

    Each request gets exactly what predicting it alone would return: results
    are split back by row (ndarray rows, list items, DataFrame/Series rows
    with a fresh index). Requests with different ``params`` are never merged.
    If a merged predict raises, every request of that batch is predicted on
    its own, so only a bad request fails, with its own exception. If it
    returns something that cannot be split by row (not one result per input
    row), the requests are predicted on their own too, and merging stops for
    good since it could never pay off for this model.
    """

    def __init__(
        self,
        predict: Predict,
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 2.0,
        executor: concurrent.futures.Executor | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self._predict = predict
        self._max_rows = max_batch_size
        self._max_wait = max_wait_ms / 1000.0
        self._executor = executor
        self._on_batch = on_batch
        self._queue: deque[_Request] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._draining = False
        self._pending = 0

    @property
    def pending(self) -> int:
        """Requests submitted and not answered yet (queued or being predicted)."""
        return self._pending

    async def submit(self, item: ScoringInput) -> Any:
        """Predict ``item`` as part of a batch and return its own predictions.

        Raises whatever ``predict`` raised for this request alone, and
        RuntimeError once :meth:`drain` has begun (a slot swaps in a new
        batcher before draining the old one, so this means a routing bug).
        """
        if self._draining:
            raise RuntimeError("this MicroBatcher is draining; submit to the current model slot")
        loop = asyncio.get_running_loop()
        request = _Request(item, loop.create_future())
        self._queue.append(request)
        self._arrived.set()
        if self._worker is None or self._worker.done():
            # Started lazily: the batcher may be created before the event loop runs.
            self._worker = loop.create_task(self._work())
        self._pending += 1
        try:
            return await request.future
        finally:
            self._pending -= 1

    async def drain(self) -> None:
        """Stop accepting requests and wait until every accepted one is answered."""
        self._draining = True
        self._arrived.set()
        if self._worker is not None:
            await self._worker

    async def _work(self) -> None:
        while True:
            if not self._queue:
                if self._draining:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            batch = await self._collect()
            if batch:
                await self._run(batch)

    async def _collect(self) -> list[_Request]:
        """Take the oldest request and everything that may join it, waiting briefly if small."""
        batch: list[_Request] = []
        rows = 0
        deadline = 0.0
        while True:
            rows, full = self._take(batch, rows)
            if full or not batch or self._draining:
                return batch
            if not deadline:
                deadline = batch[0].queued_at + self._max_wait
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                rows, _ = self._take(batch, rows)
                return batch

    def _take(self, batch: list[_Request], rows: int) -> tuple[int, bool]:
        """Move queued requests into ``batch``; return the new row count and whether it is closed.

        A batch is closed when the next request would overflow it, carries
        different params or differently shaped columns: merging stops there,
        which keeps requests in order.
        """
        queue = self._queue
        while queue:
            request = queue[0]
            if request.future.done():  # the caller gave up (cancelled)
                queue.popleft()
                continue
            if batch:
                if rows + request.item.rows > self._max_rows:
                    return rows, True
                first = batch[0].item
                if request.item.params != first.params:
                    return rows, True
                if not _same_layout(request.item.frame, first.frame):
                    return rows, True
            queue.popleft()
            batch.append(request)
            rows += request.item.rows
        return rows, rows >= self._max_rows

    # One place answers every request of a batch, whatever failed: kept whole on purpose.
    async def _run(self, batch: list[_Request]) -> None:  # noqa: C901
        """Predict a batch and answer each request; any unexpected failure answers them all."""
        try:
            if len(batch) == 1:
                await self._run_alone(batch[0])
                return
            frame = pd.concat([r.item.frame for r in batch], ignore_index=True)
            merged_ok = False
            try:
                result = await self._call(frame, batch[0].item.params)
                merged_ok = True
                parts = _split(result, [r.item.rows for r in batch])
            except Exception:  # noqa: BLE001 - isolate the failing request below
                parts = None
            if parts is None:
                if merged_ok:
                    # The output is not one row per input row: merging can never be
                    # split back, so stop paying for a merged call plus single calls.
                    self._max_rows = 1
                for request in batch:
                    await self._run_alone(request)
                return
            for request, part in zip(batch, parts, strict=True):
                if not request.future.done():
                    request.future.set_result(part)
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave callers waiting
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
        except BaseException:
            for request in batch:
                request.future.cancel()
            raise

    async def _run_alone(self, request: _Request) -> None:
        if request.future.done():
            return
        try:
            result = await self._call(request.item.frame, request.item.params)
        except Exception as exc:  # noqa: BLE001 - delivered to the caller that sent the request
            if not request.future.done():
                request.future.set_exception(exc)
        else:
            if not request.future.done():
                request.future.set_result(result)

    async def _call(self, frame: pd.DataFrame, params: dict[str, Any] | None) -> Any:
        if self._on_batch is not None:
            self._on_batch(len(frame))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._predict, frame, params)


def _same_layout(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two frames can be concatenated without pandas aligning or upcasting columns."""
    # Frames parsed against one schema share its column Index object: the cheap common case.
    if a.columns is b.columns:
        return True
    return bool(a.columns.equals(b.columns) and a.dtypes.equals(b.dtypes))


def _split(result: Any, sizes: list[int]) -> list[Any] | None:
    """Cut a batch result into per-request parts by row, or None if it is not row-aligned."""
    if isinstance(result, np.ndarray):
        rows = result.shape[0] if result.ndim else -1
    elif isinstance(result, pd.DataFrame | pd.Series | list | tuple):
        rows = len(result)
    else:
        return None
    if rows != sum(sizes):
        return None
    bounds = list(itertools.accumulate(sizes, initial=0))
    return [_rows(result, start, stop) for start, stop in itertools.pairwise(bounds)]


def _rows(result: Any, start: int, stop: int) -> Any:
    if isinstance(result, pd.DataFrame | pd.Series):
        return result.iloc[start:stop].reset_index(drop=True)
    return result[start:stop]
