"""Background workers' loops outlive any error, back off, and say how they are doing."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from modelreg import workers
from modelreg.errors import BackendUnavailableError
from modelreg.workers import UNHEALTHY_AFTER, LoopCollector, LoopHealth, run_forever


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


def test_pauses_double_after_failures_up_to_the_cap_and_reset_on_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    health = LoopHealth("sync")
    outcomes: list[BaseException | None] = [RuntimeError("x")] * 4 + [None]
    pauses: list[float] = []

    async def round_() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if not outcomes:
            raise asyncio.CancelledError

    monkeypatch.setattr(workers.asyncio, "sleep", sleep)

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await run_forever(health, round_, 1.0, max_backoff=10.0)

    asyncio.run(main())
    assert pauses == [2.0, 4.0, 8.0, 10.0, 1.0]


def test_the_collector_reports_every_loop() -> None:
    sync, webhooks = LoopHealth("background sync"), LoopHealth("webhook delivery")
    sync.succeeded()
    for _ in range(UNHEALTHY_AFTER):
        webhooks.failed(RuntimeError("ledger gone"))
    metrics = CollectorRegistry()
    metrics.register(LoopCollector([sync, webhooks]))
    text = generate_latest(metrics).decode()
    assert 'modelreg_api_loop_rounds_total{loop="background sync"} 1.0' in text
    assert 'modelreg_api_loop_failures_total{loop="background sync"} 0.0' in text
    assert 'modelreg_api_loop_healthy{loop="background sync"} 1.0' in text
    failed = f'modelreg_api_loop_failures_total{{loop="webhook delivery"}} {UNHEALTHY_AFTER}.0'
    assert failed in text
    assert 'modelreg_api_loop_healthy{loop="webhook delivery"} 0.0' in text


def test_a_modelreg_error_is_reported_by_its_message() -> None:
    health = LoopHealth("sync")
    health.failed(BackendUnavailableError("MLflow", "http://x", "connection refused"))
    assert health.last_error.startswith("MLflow at http://x is not reachable")
    health.failed(RuntimeError("y" * 1000))
    assert len(health.last_error) == 500  # a huge repr cannot bloat /health
