"""Background loops outlive any error, back off, and say how they are doing."""

from __future__ import annotations

import asyncio

import pytest

from modelreg.api.loops import UNHEALTHY_AFTER, LoopHealth, run_forever
from modelreg.errors import BackendUnavailableError


def test_a_loop_survives_bugs_and_outages_and_recovers() -> None:
    health = LoopHealth("sync")
    outcomes: list[BaseException | None] = [
        RuntimeError("a bug"),
        BackendUnavailableError("MLflow", "http://x", "connection failed"),
        ValueError("bad yaml"),
        None,
        asyncio.CancelledError(),  # how the API stops its loops
    ]
    seen: list[tuple[int, bool]] = []

    async def round_() -> None:
        seen.append((health.failures, health.healthy))
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await run_forever(health, round_, 0.001, max_backoff=0.01)

    asyncio.run(main())
    assert [failures for failures, _ in seen] == [0, 1, 2, 3, 0]
    assert [healthy for _, healthy in seen] == [True, True, True, False, True]
    assert health.failed_total == 3
    assert health.failures == 0
    assert health.last_success is not None
    assert "bad yaml" in health.last_error  # the last error stays visible after recovery


def test_health_turns_bad_after_repeated_failures() -> None:
    health = LoopHealth("sync")
    for _ in range(UNHEALTHY_AFTER - 1):
        health.failed(RuntimeError("x"))
    assert health.healthy
    health.failed(RuntimeError("x"))
    assert not health.healthy
    assert health.as_json()["consecutive_failures"] == UNHEALTHY_AFTER
    health.succeeded()
    assert health.healthy
