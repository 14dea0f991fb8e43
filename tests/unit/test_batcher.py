"""Unit and property tests of modelreg.serving.batcher.MicroBatcher, with fake predict functions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.serving.batcher import MicroBatcher
from modelreg.serving.protocol import ScoringInput

COLUMNS = pd.Index(["x", "y"])


def request(values: list[float], params: dict[str, Any] | None = None) -> ScoringInput:
    frame = pd.DataFrame({"x": values, "y": [v * 10 for v in values]}, dtype=np.float64)
    frame.columns = COLUMNS  # frames parsed against one schema share its column Index
    return ScoringInput(frame, params, len(frame))


def rowwise(frame: pd.DataFrame, params: dict[str, Any] | None) -> np.ndarray:
    """A deterministic row-wise model: each row's answer depends on that row only."""
    offset = (params or {}).get("offset", 0)
    return frame["x"].to_numpy() * 2 + frame["y"].to_numpy() + offset


def run(main: Callable[[ThreadPoolExecutor], Coroutine[Any, Any, Any]]) -> Any:
    with ThreadPoolExecutor(2) as executor:
        return asyncio.run(main(executor))


class Recorder:
    """Wraps a predict function; records batch sizes and lets a test hold predict calls."""

    def __init__(self, predict: Callable[..., Any] = rowwise) -> None:
        self.predict = predict
        self.sizes: list[int] = []
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, frame: pd.DataFrame, params: dict[str, Any] | None) -> Any:
        self.entered.set()
        self.gate.wait(timeout=10)
        self.calls.append(len(frame))
        return self.predict(frame, params)


async def in_predict(recorder: Recorder) -> None:
    """Wait until a predict call has started (and is held by the closed gate)."""
    assert await asyncio.to_thread(recorder.entered.wait, 10)


async def submit_all(batcher: MicroBatcher, items: list[ScoringInput]) -> list[Any]:
    return await asyncio.gather(*(batcher.submit(item) for item in items), return_exceptions=True)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=30),
    max_batch_size=st.integers(1, 20),
    max_wait_ms=st.sampled_from([0.0, 1.0, 5.0]),
)
def test_every_request_gets_what_predicting_it_alone_gives(
    sizes: list[int], max_batch_size: int, max_wait_ms: float
) -> None:
    values = np.arange(sum(sizes), dtype=np.float64) * 1.5
    items, start = [], 0
    for size in sizes:
        items.append(request(values[start : start + size].tolist()))
        start += size
    recorder = Recorder()
    batch_sizes: list[int] = []

    async def main(executor: ThreadPoolExecutor) -> list[Any]:
        batcher = MicroBatcher(
            recorder,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            executor=executor,
            on_batch=batch_sizes.append,
        )
        results = await submit_all(batcher, items)
        await batcher.drain()
        assert batcher.pending == 0
        return results

    results = run(main)
    for item, result in zip(items, results, strict=True):
        np.testing.assert_array_equal(result, rowwise(item.frame, None))
    assert batch_sizes == recorder.calls
    assert sum(batch_sizes) == sum(sizes)
    # A batch exceeds the limit only when one request alone is larger.
    assert all(size <= max(max_batch_size, *sizes) for size in batch_sizes)
    assert all(size <= max_batch_size or size in sizes for size in batch_sizes)


@pytest.mark.parametrize(
    ("predict", "check"),
    [
        (
            lambda f, p: pd.DataFrame({"out": rowwise(f, p)}, index=f.index + 100),
            lambda result, alone: pd.testing.assert_frame_equal(
                result, alone.reset_index(drop=True)
            ),
        ),
        (
            lambda f, p: pd.Series(rowwise(f, p)),
            pd.testing.assert_series_equal,
        ),
        (lambda f, p: rowwise(f, p).tolist(), lambda result, alone: result == alone),
    ],
    ids=["dataframe", "series", "list"],
)
def test_results_are_split_by_row_for_every_output_type(
    predict: Callable[..., Any], check: Callable[[Any, Any], Any]
) -> None:
    items = [request([1.0, 2.0]), request([3.0]), request([4.0, 5.0, 6.0])]
    recorder = Recorder(predict)

    async def main(executor: ThreadPoolExecutor) -> list[Any]:
        batcher = MicroBatcher(recorder, max_wait_ms=50, executor=executor)
        return await submit_all(batcher, items)

    results = run(main)
    assert recorder.calls == [6]  # one merged predict
    for item, result in zip(items, results, strict=True):
        assert check(result, predict(item.frame, None)) in (None, True)


def test_requests_arriving_during_predict_form_the_next_batch() -> None:
    recorder = Recorder()
    recorder.gate.clear()

    async def main(executor: ThreadPoolExecutor) -> list[Any]:
        batcher = MicroBatcher(recorder, max_wait_ms=0, executor=executor)
        first = asyncio.ensure_future(batcher.submit(request([1.0])))
        await in_predict(recorder)
        rest = [asyncio.ensure_future(batcher.submit(request([float(i)]))) for i in range(5)]
        await asyncio.sleep(0.02)
        assert batcher.pending == 6
        recorder.gate.set()
        return await asyncio.gather(first, *rest)

    results = run(main)
    assert recorder.calls == [1, 5]
    assert [r.tolist() for r in results] == [[12.0]] + [[12.0 * i] for i in range(5)]


def test_a_lone_request_waits_at_most_max_wait() -> None:
    recorder = Recorder()

    async def main(executor: ThreadPoolExecutor) -> float:
        batcher = MicroBatcher(recorder, max_wait_ms=30, executor=executor)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.submit(request([1.0]))
        return loop.time() - started

    elapsed = run(main)
    assert 0.025 <= elapsed < 1.0
    assert recorder.calls == [1]


def test_a_bad_request_fails_alone() -> None:
    def picky(frame: pd.DataFrame, params: dict[str, Any] | None) -> np.ndarray:
        if (frame["x"] < 0).any():
            raise ValueError("negative input")
        return rowwise(frame, params)

    recorder = Recorder(picky)
    items = [request([1.0]), request([-1.0, 2.0]), request([3.0])]

    async def main(executor: ThreadPoolExecutor) -> list[Any]:
        batcher = MicroBatcher(recorder, max_wait_ms=50, executor=executor)
        return await submit_all(batcher, items)

    good, bad, also_good = run(main)
    assert isinstance(bad, ValueError)
    assert str(bad) == "negative input"
    assert good.tolist() == [12.0]
    assert also_good.tolist() == [36.0]
    assert recorder.calls == [4, 1, 2, 1]  # merged attempt, then each alone


def test_requests_with_different_params_are_never_merged() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    offsets = [None, {"offset": 1}, {"offset": 1}, None, {"offset": 2}]

    async def main(executor: ThreadPoolExecutor) -> list[Any]:
        batcher = MicroBatcher(recorder, max_wait_ms=0, executor=executor)
        blocker = asyncio.ensure_future(batcher.submit(request([0.0])))
        await in_predict(recorder)
        tasks = [asyncio.ensure_future(batcher.submit(request([1.0], p))) for p in offsets]
        await asyncio.sleep(0.02)
        recorder.gate.set()
        await blocker
        return await asyncio.gather(*tasks)

    results = run(main)
    assert [r.tolist() for r in results] == [[12.0], [13.0], [13.0], [12.0], [14.0]]
    assert recorder.calls == [1, 1, 2, 1, 1]


def test_unsplittable_output_is_predicted_alone_and_stops_merging() -> None:
    recorder = Recorder(lambda frame, params: float(frame["x"].sum()))

    async def main(executor: ThreadPoolExecutor) -> tuple[list[Any], list[Any]]:
        batcher = MicroBatcher(recorder, max_wait_ms=50, executor=executor)
        first = await submit_all(batcher, [request([1.0, 2.0]), request([5.0])])
        second = await submit_all(batcher, [request([1.0]), request([2.0])])
        return first, second

    first, second = run(main)
    assert first == [3.0, 5.0]
    assert second == [1.0, 2.0]
    assert recorder.calls == [3, 2, 1, 1, 1]


def test_frames_with_different_columns_are_not_merged() -> None:
    recorder = Recorder(lambda frame, params: np.zeros(len(frame)))
    other = pd.DataFrame({"x": [1.0]})

    async def main(executor: ThreadPoolExecutor) -> list[Any]:
        batcher = MicroBatcher(recorder, max_wait_ms=50, executor=executor)
        return await submit_all(batcher, [request([1.0]), ScoringInput(other, None, 1)])

    run(main)
    assert recorder.calls == [1, 1]


def test_drain_finishes_accepted_requests_then_refuses_new_ones() -> None:
    recorder = Recorder()
    recorder.gate.clear()

    async def main(executor: ThreadPoolExecutor) -> list[Any]:
        batcher = MicroBatcher(recorder, max_wait_ms=0, executor=executor)
        tasks = [asyncio.ensure_future(batcher.submit(request([float(i)]))) for i in range(3)]
        await asyncio.sleep(0.02)
        drained = asyncio.ensure_future(batcher.drain())
        await asyncio.sleep(0.02)
        assert not drained.done()
        with pytest.raises(RuntimeError, match="draining"):
            await batcher.submit(request([9.0]))
        recorder.gate.set()
        await drained
        assert all(task.done() for task in tasks)
        assert batcher.pending == 0
        return [task.result().tolist() for task in tasks]

    assert run(main) == [[0.0], [12.0], [24.0]]


def test_drain_of_an_unused_batcher_returns_at_once() -> None:
    async def main(executor: ThreadPoolExecutor) -> None:
        await MicroBatcher(rowwise, executor=executor).drain()

    run(main)


def test_a_cancelled_request_does_not_disturb_the_others() -> None:
    recorder = Recorder()
    recorder.gate.clear()

    async def main(executor: ThreadPoolExecutor) -> list[Any]:
        batcher = MicroBatcher(recorder, max_wait_ms=0, executor=executor)
        blocker = asyncio.ensure_future(batcher.submit(request([0.0])))
        await in_predict(recorder)
        gone = asyncio.ensure_future(batcher.submit(request([1.0])))
        kept = asyncio.ensure_future(batcher.submit(request([2.0])))
        await asyncio.sleep(0.01)
        gone.cancel()
        recorder.gate.set()
        await blocker
        result = await kept
        await batcher.drain()
        return [result.tolist(), batcher.pending]

    assert run(main) == [[24.0], 0]
    assert recorder.calls == [1, 1]


def test_created_outside_a_loop_and_default_executor() -> None:
    batcher = MicroBatcher(rowwise)

    async def main() -> Any:
        return await batcher.submit(request([2.0]))

    assert asyncio.run(main()).tolist() == [24.0]


@pytest.mark.parametrize(("size", "wait"), [(0, 1.0), (4, -1.0)])
def test_invalid_settings_are_refused(size: int, wait: float) -> None:
    with pytest.raises(ValueError, match="max_"):
        MicroBatcher(rowwise, max_batch_size=size, max_wait_ms=wait)


def test_fast_calls_run_on_the_event_loop_and_slow_ones_go_back_to_the_thread() -> None:
    threads: list[str] = []
    delays = iter([0.0, 0.0, 0.05, 0.0])

    def timed(frame: pd.DataFrame, params: dict[str, Any] | None) -> np.ndarray:
        threads.append(threading.current_thread().name)
        threading.Event().wait(next(delays))
        return rowwise(frame, params)

    async def main(executor: ThreadPoolExecutor) -> list[Any]:
        batcher = MicroBatcher(timed, executor=executor, inline_seconds=0.01, max_wait_ms=0)
        answers = [await batcher.submit(request([float(i)])) for i in range(4)]
        await batcher.drain()
        return answers

    answers = run(main)
    assert [a.tolist() for a in answers] == [[0.0], [12.0], [24.0], [36.0]]
    loop = threading.main_thread().name
    # Calls under 10 ms run inline; the 50 ms one lifts the running mean over it,
    # so the next call goes to a pool thread.
    assert threads[:3] == [loop, loop, loop]
    assert threads[3] != loop
