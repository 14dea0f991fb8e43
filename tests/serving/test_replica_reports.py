"""A model server reports what it serves, since when, and its reloads and refused loads.

The story runs a real app (``create_app`` with the registry as its model source,
experiment source and replica sink, as ``modelreg serve`` builds it) under a real
uvicorn on both backends. The failure paths of :class:`ReplicaReporter` (a ledger
outage, a shutdown mid-write) use an in-memory sink, the only way to time them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from experiment_fakes import uvicorn_server
from prometheus_client import CollectorRegistry
from serving_helpers import register_trees, to_production, unique_name

from integration.registry_helpers import overwrite_artifact
from modelreg.domain import ReloadEvent, ReloadOutcome, ReplicaReport, ServedSlot
from modelreg.errors import BackendUnavailableError
from modelreg.registry import Registry
from modelreg.serving.app import create_app
from modelreg.serving.config import build_config
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.reporting import ReplicaReporter
from modelreg.views import ReloadView, ServedSlotView
from services import Backend

T = TypeVar("T")
TIMEOUT = 30.0


def _until(what: str, probe: Callable[[], T | None]) -> T:
    """Poll ``probe`` until it returns something other than None (or fail after TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while (found := probe()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def _slot_at(registry: Registry, name: str, version: int) -> Callable[[], ServedSlotView | None]:
    def probe() -> ServedSlotView | None:
        slots = registry.replicas(name)
        return slots[0] if len(slots) == 1 and slots[0].version == version else None

    return probe


@pytest.mark.integration
def test_a_server_reports_its_slot_reloads_refusals_and_its_end(
    backend: Backend, module_registry: Registry, tmp_path: Path
) -> None:
    registry = module_registry
    name = unique_name("reports")
    register_trees(registry, backend, name, [1, 2, 3])
    to_production(registry, name, 1)
    config = build_config(
        {
            "models": [{"name": name, "poll_interval": 0.3}],
            "cache_dir": str(tmp_path / "cache"),
            "flush_interval": 0.2,
        }
    )
    metrics = CollectorRegistry()
    app = create_app(
        config, registry, experiments=registry, replicas=registry, metrics_registry=metrics
    )
    started = datetime.now(UTC)
    with uvicorn_server(app):
        first = _until("the first report", _slot_at(registry, name, 1))
        assert (first.variant, first.alias, first.semver) == (
            "default",
            "production",
            registry.show(name, 1).semver,
        )
        assert first.since is not None and started <= first.since <= first.reported_at
        assert first.reasons == []
        replica = first.replica

        to_production(registry, name, 2)
        second = _until("v2 served", _slot_at(registry, name, 2))
        assert second.replica == replica
        assert second.semver == registry.show(name, 2).semver
        assert second.since is not None and second.since > first.since
        loaded = registry.reloads(name).reloads
        assert [(r.version, r.outcome) for r in loaded] == [(2, "loaded"), (1, "loaded")]
        assert {r.replica for r in loaded} == {replica}

        forged = tmp_path / "forged" / "MLmodel"
        forged.parent.mkdir()
        forged.write_text("artifact_path: model\nflavors: {}\n")
        overwrite_artifact(backend, name, 3, forged)
        to_production(registry, name, 3)

        def refused() -> ReloadView | None:
            newest = registry.reloads(name, limit=1).reloads
            return newest[0] if newest and newest[0].outcome == "refused" else None

        refusal = _until("v3 refused", refused)
        assert (refusal.version, refusal.reason) == (3, "integrity")
        assert "failed integrity verification" in refusal.message
        degraded = _until(
            "the degraded slot reported",
            lambda: next((s for s in registry.replicas(name) if s.reasons), None),
        )
        assert (degraded.version, degraded.since) == (2, second.since)  # v2 keeps serving
        assert any("version 3" in reason for reason in degraded.reasons)
        assert metrics.get_sample_value("modelreg_serving_replica_report_failures_total") == 0
    # The server is gone: its last report took its slots away.
    assert registry.replicas(name) == []
    # v3 is retried after a back-off while the server runs: refused again each time.
    history = [(r.version, r.outcome) for r in reversed(registry.reloads(name, limit=100).reloads)]
    assert history[:2] == [(1, "loaded"), (2, "loaded")]
    assert set(history[2:]) == {(3, "refused")}


# --- failure paths, with an in-memory sink ------------------------------------------------


class Sink:
    """Keeps the reports it is given, in the order they are written; can fail or hold writes."""

    def __init__(self) -> None:
        self.written: list[ReplicaReport] = []
        self.failing = False
        self.hold: threading.Event | None = None

    def record_replica(self, report: ReplicaReport) -> None:
        hold = self.hold
        if hold is not None:
            self.hold = None  # only this write waits
            hold.wait(10)
        if self.failing:
            raise BackendUnavailableError("ledger", "connection refused")
        self.written.append(report)


SLOT = ServedSlot("churn", "default", "production", 2, "1.1.0", "sha256:2", datetime.now(UTC))


def _event(version: int) -> ReloadEvent:
    return ReloadEvent(
        "churn", "default", version, ReloadOutcome.LOADED, "", f"v{version}", datetime.now(UTC)
    )


def _reporter(sink: Sink) -> ReplicaReporter:
    return ReplicaReporter(sink, ServingMetrics(CollectorRegistry()), replica="host/r1")


def test_a_ledger_outage_keeps_the_reloads_for_the_next_round_and_is_counted() -> None:
    sink = Sink()
    reporter = _reporter(sink)

    async def scenario() -> None:
        reporter.reloaded(_event(1))
        reporter.reloaded(_event(2))
        sink.failing = True
        assert await reporter.report([SLOT]) is False
        reporter.reloaded(_event(3))  # while the ledger was away
        assert await reporter.report([SLOT]) is False
        sink.failing = False
        assert await reporter.report([SLOT]) is True
        assert await reporter.report([SLOT]) is True  # nothing new: slots only

    asyncio.run(scenario())
    assert [[e.version for e in r.reloads] for r in sink.written] == [[1, 2, 3], []]
    assert all(r.slots == (SLOT,) and r.replica == "host/r1" for r in sink.written)
    failures = reporter.metrics.registry.get_sample_value(
        "modelreg_serving_replica_report_failures_total"
    )
    assert failures == 2


def test_a_report_cancelled_mid_write_is_not_overtaken_by_the_last_one() -> None:
    sink = Sink()
    reporter = _reporter(sink)

    held = sink.hold = threading.Event()

    async def scenario() -> None:
        running = asyncio.create_task(reporter.run(lambda: [SLOT]))
        await asyncio.sleep(0.1)  # the first round's write is in its thread, held
        running.cancel()  # shutdown, as DataPlane.stop does it
        asyncio.get_running_loop().call_later(0.3, held.set)
        await asyncio.gather(running, return_exceptions=True)
        assert await reporter.report(()) is True  # the last report: no slots

    asyncio.run(scenario())
    # Written in order: the round's slots, then the goodbye, which is what stays.
    assert [r.slots for r in sink.written] == [(SLOT,), ()]
