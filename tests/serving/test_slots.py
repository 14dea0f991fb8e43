"""Model slots in-process against real services: a registry outage leaves the model serving."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from serving_helpers import to_production, unique_name

from integration.registry_helpers import create_versions, training_frame
from modelreg.errors import ModelNotReadyError
from modelreg.registry import Registry
from modelreg.serving.config import ModelConfig
from modelreg.serving.loader import ModelLoader
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.protocol import ScoringInput
from modelreg.serving.slots import CheckResult, ModelSlot
from modelreg.stack import free_port
from services import Backend

pytestmark = pytest.mark.integration


def test_an_unreachable_registry_degrades_but_keeps_serving(
    backend: Backend,
    module_registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Fail fast: the slot retries on its next poll anyway.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    name = unique_name("slot")
    create_versions(backend, module_registry, name, 1)
    dead = Registry.connect(
        f"http://127.0.0.1:{free_port()}", backend.ledger_uri, home=tmp_path / "dead"
    )
    slot = ModelSlot(
        ModelConfig(name=name),
        module_registry,
        ModelLoader(module_registry, tmp_path / "cache"),
        ServingMetrics(CollectorRegistry()),
    )
    frame = training_frame(2, rows=2)

    async def scenario() -> None:
        # No Production version yet: nothing to serve, and the slot says why.
        assert await slot.check() is CheckResult.FAILED
        with pytest.raises(ModelNotReadyError, match="@production"):
            slot.serving()
        to_production(module_registry, name, 1)
        assert await slot.check() is CheckResult.RELOADED
        assert slot.reasons() == []

        slot.source = dead
        caplog.clear()
        with caplog.at_level(logging.INFO):
            for _ in range(3):  # three polls of one outage
                assert await slot.check() is CheckResult.FAILED
        # One warning for the outage, not one per poll, from any logger.
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "registry check failed" in warnings[0]
        [reason] = slot.reasons()
        assert reason.startswith("registry check failed: MLflow at http://127.0.0.1:")
        status = slot.status()
        assert (status["ready"], status["degraded"], status["version"]) == (True, True, 1)
        predictions = await slot.serving().batcher.submit(ScoringInput(frame, None, 2))
        assert len(predictions) == 2

        slot.source = module_registry
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert await slot.check() is CheckResult.UNCHANGED
            assert await slot.check() is CheckResult.UNCHANGED
        # ... and one line when it is over.
        messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert len(messages) == 1, messages
        assert "registry check works again" in messages[0]
        assert slot.reasons() == []
        await slot.close()

    try:
        asyncio.run(scenario())
    finally:
        dead.close()
