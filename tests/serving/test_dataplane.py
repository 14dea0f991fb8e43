"""The transport-free data plane, driven without HTTP: scoring, errors, metrics and reload."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from serving_helpers import slot, to_production, unique_name

from integration.registry_helpers import create_versions, training_frame
from modelreg.errors import (
    AuthenticationError,
    ModelNotReadyError,
    ModelregError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from modelreg.http_status import status_for
from modelreg.registry import Registry
from modelreg.serving.config import ModelConfig
from modelreg.serving.dataplane import LARGE_BODY_BYTES, DataPlane, InferenceRequest
from modelreg.serving.loader import ModelLoader
from modelreg.serving.metrics import NO_VERSION, UNKNOWN_MODEL, ServingMetrics
from modelreg.serving.router import DEFAULT_VARIANT
from modelreg.serving.slots import ModelSlot, SlotSet
from services import Backend

TOKEN = "a-reload-token-of-some-length"


class Body:
    """A body reader that counts how often it was asked (a transport's stream, in memory)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    async def __call__(self, limit: int) -> bytes:
        self.reads += 1
        if len(self.data) > limit:
            raise PayloadTooLargeError(len(self.data), limit)
        return self.data


def _plane(slots: SlotSet, *, max_body_bytes: int = 1024) -> DataPlane:
    return DataPlane(
        slots,
        slots.default.metrics,
        status_for=status_for,
        max_body_bytes=max_body_bytes,
        reload_token=TOKEN,
    )


def _requests(plane: DataPlane, model: str, code: str, version: str = NO_VERSION) -> float:
    value = plane.metrics.registry.get_sample_value(
        "modelreg_serving_requests_total",
        {"model": model, "variant": DEFAULT_VARIANT, "version": version, "code": code},
    )
    return value or 0.0


def test_a_model_not_served_here_is_not_found_and_counted_as_unknown() -> None:
    plane = _plane(SlotSet([slot("churn")]))
    body = Body(b"{}")
    answer = asyncio.run(plane.infer(InferenceRequest(body, "application/json", "r1", "nope")))
    assert isinstance(answer.error, NotFoundError)
    assert answer.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert answer.served is None
    assert body.reads == 0
    assert _requests(plane, UNKNOWN_MODEL, "404") == 1


def test_nothing_loaded_answers_before_reading_the_body() -> None:
    plane = _plane(SlotSet([slot("churn")]))
    body = Body(b"{}")
    answer = asyncio.run(plane.infer(InferenceRequest(body, "application/json", "r2")))
    assert isinstance(answer.error, ModelNotReadyError)
    assert answer.error_code == "TEMPORARILY_UNAVAILABLE"
    assert answer.variant == DEFAULT_VARIANT
    assert body.reads == 0
    assert _requests(plane, "churn", "503") == 1


@pytest.mark.parametrize(
    ("token", "error"),
    [(None, AuthenticationError), ("", AuthenticationError), ("x" * 30, PermissionDeniedError)],
)
def test_reload_needs_the_token(token: str | None, error: type[ModelregError]) -> None:
    plane = _plane(SlotSet([slot("churn")]))  # the source is never asked
    with pytest.raises(error):
        asyncio.run(plane.reload(token))


def test_reload_without_a_configured_token_does_not_exist() -> None:
    slots = SlotSet([slot("churn")])
    plane = DataPlane(slots, slots.default.metrics, status_for=status_for, max_body_bytes=1)
    with pytest.raises(NotFoundError, match="disabled"):
        asyncio.run(plane.reload(TOKEN))


@pytest.mark.integration
def test_the_data_plane_scores_reloads_and_counts_without_http(
    backend: Backend, module_registry: Registry, tmp_path: Path
) -> None:
    name = unique_name("plane")
    create_versions(backend, module_registry, name, 1)
    to_production(module_registry, name, 1)
    metrics = ServingMetrics(CollectorRegistry())
    served = ModelSlot(
        ModelConfig(name=name), module_registry, ModelLoader(module_registry, tmp_path), metrics
    )
    plane = _plane(SlotSet([served]), max_body_bytes=64 * 1024)
    frame = training_frame(4, rows=3)
    records = json.dumps({"dataframe_records": frame.to_dict(orient="records")}).encode()

    async def scenario() -> None:
        await plane.start()
        try:
            assert plane.ready
            answer = await plane.infer(InferenceRequest(Body(records), "application/json", "r3"))
            assert answer.error is None, answer.error
            assert answer.predictions is not None
            assert len(json.loads(answer.predictions)["predictions"]) == 3
            assert answer.served is not None
            assert (answer.served.name, answer.served.version) == (name, 1)
            assert answer.variant == DEFAULT_VARIANT

            bad = await plane.infer(InferenceRequest(Body(b"{"), "application/json", "r4", name))
            assert bad.error_code == "BAD_REQUEST"
            assert bad.served is not None  # the version that would have answered
            big = Body(b" " * (64 * 1024 + 1))
            large = await plane.infer(InferenceRequest(big, "application/json", "r5"))
            assert large.error_code == "REQUEST_LIMIT_EXCEEDED"

            # Past LARGE_BODY_BYTES a body is parsed in a thread: same answers, same errors.
            many = training_frame(5, rows=1500)
            split = {"columns": list(many.columns), "data": many.to_numpy().tolist()}
            data = json.dumps({"dataframe_split": split}).encode()
            assert LARGE_BODY_BYTES < len(data) < 64 * 1024 * 8
            plane.max_body_bytes = 64 * 1024 * 8
            rows = await plane.infer(InferenceRequest(Body(data), "application/json", "r6"))
            assert rows.error is None, rows.error
            assert rows.predictions is not None
            expected = answer.served.predict(many, None).tolist()
            assert json.loads(rows.predictions)["predictions"] == expected
            broken = Body(data[:-2])
            refused = await plane.infer(InferenceRequest(broken, "application/json", "r7"))
            assert refused.error_code == "BAD_REQUEST"

            reloaded: dict[str, Any] = await plane.reload(TOKEN)
            assert reloaded["results"] == {name: "unchanged"}
            assert reloaded["models"][0]["version"] == 1
            assert plane.model_readiness(name)["ready"] is True
        finally:
            await plane.stop()

    asyncio.run(scenario())
    assert _requests(plane, name, "200", "1") == 2
    assert _requests(plane, name, "400", "1") == 2
    assert _requests(plane, name, "413", "1") == 1
