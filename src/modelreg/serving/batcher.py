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

from modelreg.serving.protocol import ScoringInput, as_frame

Predict = Callable[[Any, dict[str, Any] | None], Any]
"""``predict(input, params)``: input a DataFrame, or with ``takes_arrays`` also a 2-D array."""

#: Weight of the newest predict call in the running mean of call durations.
_CALL_WEIGHT = 0.2

INLINE_SECONDS = 0.0003
"""What a slot passes as ``inline_seconds`` for a compiled model.

A thread hand-off (submit, wake a worker, resolve the future back on the loop) cost about
0.04 ms of CPU per batch in the serving profile, more than a compiled forest takes for one
row; a pyfunc call (milliseconds) always goes to the thread pool."""


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
    The wait is also never longer than a predict call has been taking (a
    running mean): for a model answering in microseconds, waiting milliseconds
    for company costs more than the merged call saves, and the requests that
    arrive meanwhile batch up during the call anyway. And after a batch of one
    request, the next does not wait at all: nothing was arriving concurrently
    (one client sending one request at a time would pay the wait on every
    request and never gain a merge); waiting resumes as soon as requests
    accumulate during a predict call again.

    Inputs parsed as arrays (:class:`ScoringInput`) are merged with one
    ``np.concatenate``; ``predict`` gets the merged array when ``takes_arrays``
    is true (:meth:`LoadedModel.predict` does), else a DataFrame built from it
    once per batch. An array is never merged with a frame, nor arrays of
    different columns or dtypes.

    With ``inline_seconds`` (seconds) a predict call runs on the event loop
    instead of in ``executor`` while calls have been taking less than that
    (the running mean): for a compiled model on a few rows the thread
    hand-off costs more than the call. Longer calls go back to the thread.

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
        takes_arrays: bool = False,
        inline_seconds: float = 0.0,
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
        self._takes_arrays = takes_arrays
        self._inline_seconds = inline_seconds
        self._call_seconds = self._max_wait  # until measured: the configured wait
        self._concurrent = True  # whether the last batch merged requests (see the docstring)
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
                self._concurrent = len(batch) > 1
                await self._run(batch)

    async def _collect(self) -> list[_Request]:
        """Take the oldest request and everything that may join it, waiting briefly if small."""
        batch: list[_Request] = []
        rows = 0
        deadline = 0.0
        while True:
            rows, full = self._take(batch, rows)
            if full or not batch or self._draining or not self._concurrent:
                return batch
            if not deadline:
                deadline = batch[0].queued_at + min(self._max_wait, self._call_seconds)
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
                if not _same_layout(request.item, first):
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
            merged_ok = False
            try:
                result = await self._call(_merge([r.item for r in batch]), batch[0].item.params)
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
            result = await self._call(request.item, request.item.params)
        except Exception as exc:  # noqa: BLE001 - delivered to the caller that sent the request
            if not request.future.done():
                request.future.set_exception(exc)
        else:
            if not request.future.done():
                request.future.set_result(result)

    async def _call(self, item: ScoringInput, params: dict[str, Any] | None) -> Any:
        if self._on_batch is not None:
            self._on_batch(item.rows)
        data = item.data if self._takes_arrays else item.frame
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            if self._call_seconds < self._inline_seconds:
                # Cheaper than handing it to a thread and back (a compiled model on a
                # few rows): predicting on the event loop costs the loop less.
                return self._predict(data, params)
            return await loop.run_in_executor(self._executor, self._predict, data, params)
        finally:
            seconds = time.monotonic() - started
            self._call_seconds += _CALL_WEIGHT * (seconds - self._call_seconds)


def _same_layout(a: ScoringInput, b: ScoringInput) -> bool:
    """Whether two inputs merge without pandas aligning or upcasting columns."""
    x, y = a.data, b.data
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return (
            isinstance(x, np.ndarray)
            and isinstance(y, np.ndarray)
            and x.dtype == y.dtype
            and x.ndim == y.ndim == 2
            and x.shape[1] == y.shape[1]
            and (a.columns is b.columns or _same_columns(a.columns, b.columns))
        )
    # Frames parsed against one schema share its column Index object: the cheap common case.
    if x.columns is y.columns:
        return True
    return bool(x.columns.equals(y.columns) and x.dtypes.equals(y.dtypes))


def _same_columns(a: pd.Index | None, b: pd.Index | None) -> bool:
    return a is not None and b is not None and bool(a.equals(b))


def _merge(items: list[ScoringInput]) -> ScoringInput:
    """One input holding every row of ``items`` (of one layout, see :func:`_same_layout`)."""
    first = items[0]
    rows = sum(item.rows for item in items)
    if isinstance(first.data, np.ndarray):
        merged = np.concatenate([item.data for item in items])
        return ScoringInput(merged, first.params, rows, first.columns)
    frame = pd.concat([as_frame(item.data, item.columns) for item in items], ignore_index=True)
    return ScoringInput(frame, first.params, rows)


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
