"""MicroBatcher with array inputs: merged by concatenation, never with frames, same answers."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.serving.batcher import MicroBatcher
from modelreg.serving.protocol import ScoringInput

COLUMNS = pd.Index(["x", "y"])


def array_input(rows: list[float], dtype: Any = np.float64) -> ScoringInput:
    values = np.array([[v, v * 10] for v in rows], dtype=dtype).reshape(len(rows), 2)
    return ScoringInput(values, None, len(rows), COLUMNS)


def frame_input(rows: list[float]) -> ScoringInput:
    frame = pd.DataFrame({"x": rows, "y": [v * 10 for v in rows]}, dtype=np.float64)
    frame.columns = COLUMNS
    return ScoringInput(frame, None, len(frame))


class Calls:
    """A row-wise model recording what each predict call was given."""

    def __init__(self) -> None:
        self.given: list[Any] = []

    def __call__(self, data: Any, params: dict[str, Any] | None) -> np.ndarray:
        self.given.append(data)
        values = data.to_numpy() if isinstance(data, pd.DataFrame) else data
        return values[:, 0] * 2 + values[:, 1]


def submit_together(batcher: MicroBatcher, items: list[ScoringInput]) -> list[Any]:
    async def main() -> list[Any]:
        results = await asyncio.gather(*(batcher.submit(item) for item in items))
        await batcher.drain()
        return list(results)

    return asyncio.run(main())


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=5), min_size=1, max_size=8),
    st.booleans(),
)
def test_arrays_merge_into_one_call_and_answer_as_alone(
    sizes: list[list[float]], takes_arrays: bool
) -> None:
    calls = Calls()
    items = [array_input(rows) for rows in sizes]
    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(calls, executor=executor, takes_arrays=takes_arrays)
        results = submit_together(batcher, items)
    assert len(calls.given) == 1
    merged = calls.given[0]
    if takes_arrays:
        assert isinstance(merged, np.ndarray)
    else:  # a DataFrame built once for the batch, named by the schema's columns
        assert isinstance(merged, pd.DataFrame)
        assert list(merged.columns) == list(COLUMNS)
    for item, result in zip(items, results, strict=True):
        np.testing.assert_array_equal(result, calls(item.data, None))


def test_an_array_is_never_merged_with_a_frame_nor_another_dtype() -> None:
    calls = Calls()
    items = [
        array_input([1.0]),
        frame_input([2.0]),
        array_input([3.0]),
        array_input([4.0], np.float32),
        array_input([5.0]),
    ]
    with ThreadPoolExecutor(1) as executor:
        results = submit_together(MicroBatcher(calls, executor=executor, takes_arrays=True), items)
    assert [len(given) for given in calls.given] == [1, 1, 1, 1, 1]
    assert [r.tolist() for r in results] == [[12.0], [24.0], [36.0], [48.0], [60.0]]


def test_a_request_alone_reaches_predict_as_an_array_or_a_frame() -> None:
    for takes_arrays, kind in ((True, np.ndarray), (False, pd.DataFrame)):
        calls = Calls()
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(calls, executor=executor, takes_arrays=takes_arrays)
            submit_together(batcher, [array_input([1.0, 2.0])])
        assert isinstance(calls.given[0], kind)


def test_after_a_lone_request_the_next_one_does_not_wait() -> None:
    # One client sending one request at a time would pay max_wait_ms on every request.
    calls = Calls()

    async def main() -> float:
        batcher = MicroBatcher(calls, max_wait_ms=1_000)
        await batcher.submit(array_input([1.0]))  # the first waits (nothing known yet)...
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.submit(array_input([2.0]))  # ...but not once a predict took microseconds
        return loop.time() - started

    assert asyncio.run(asyncio.wait_for(main(), 30)) < 1.0
