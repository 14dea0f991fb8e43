"""A/B experiments in the model server, in-process over real pyfunc models and uvicorn.

The models are real MLflow pyfunc directories (version N predicts N), loaded,
verified and warmed as registry versions are; the experiment source is the
in-memory :class:`~experiment_fakes.Experiments`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from experiment_fakes import Experiments, Models, ramped, route, save_versions, uvicorn_server
from prometheus_client import CollectorRegistry

from modelreg.experiments.definition import Arm, ExperimentState
from modelreg.serving.app import build_plane, create_app
from modelreg.serving.config import ServerConfig, build_config
from modelreg.serving.dataplane import DataPlane, InferenceRequest, InferenceResponse
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.router import DEFAULT_VARIANT

NAME = "churn"
BODY = json.dumps({"dataframe_records": [{"x": 1.0}, {"x": 2.0}]}).encode()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Versions 1, 2 and 3 of the test model, saved once per module."""
    return save_versions(tmp_path_factory.mktemp("versions"), 3)


def _config(cache: Path, **server: Any) -> ServerConfig:
    return build_config(
        {"models": [{"name": NAME, "poll_interval": 0.05}], "cache_dir": str(cache), **server}
    )


def _plane(models: Models, experiments: Experiments, cache: Path) -> DataPlane:
    return build_plane(
        _config(cache, flush_interval=3600),
        models,
        experiments,
        cache_dir=cache,
        metrics=ServingMetrics(CollectorRegistry()),
        executor=ThreadPoolExecutor(2),
    )


async def _read(_limit: int) -> bytes:
    return BODY


async def _ask(plane: DataPlane, key: str, request_id: str = "r") -> InferenceResponse:
    headers = {"x-user-id": key} if key else {}
    return await plane.infer(InferenceRequest(_read, "application/json", request_id, None, headers))


def _who(answer: InferenceResponse) -> tuple[str, int]:
    """The variant and version that answered, checked against what the model predicted."""
    assert answer.error is None, answer.error
    assert answer.served is not None and answer.predictions is not None
    predicted = json.loads(answer.predictions)["predictions"]
    assert predicted == [float(answer.served.version)] * 2
    return answer.variant, answer.served.version


def test_arms_follow_the_experiment_and_answers_name_who_answered(
    saved: dict[int, Path], tmp_path: Path
) -> None:
    experiments = Experiments({NAME: route(NAME, traffic=0.5)})
    plane = _plane(Models(NAME, saved), experiments, tmp_path)

    async def scenario() -> None:
        await plane.start()
        try:
            answers = [_who(await _ask(plane, f"user-{i}")) for i in range(200)]
            assert set(answers) == {("control", 1), ("treatment", 2)}
            again = [_who(await _ask(plane, f"user-{i}", "other")) for i in range(200)]
            assert again == answers  # sticky: the key decides, not the request
            labels = [s["model"] + ":" + s["variant"] for s in plane.versions()["models"]]
            assert labels == [f"{NAME}:default", f"{NAME}:treatment"]  # control is the default slot
            shown = plane.versions()["experiments"][NAME]
            assert (shown["arms"], shown["degraded"]) == ({"control": 1, "treatment": 2}, False)
            for i in range(10):  # no X-User-ID: routed on the request id, and counted
                _who(await _ask(plane, "", f"no-key-{i}"))

            experiments.routes[NAME] = None  # concluded: back to the default variant
            await plane.slots.check_all(force=False)
            assert {_who(await _ask(plane, f"user-{i}")) for i in range(50)} == {
                (DEFAULT_VARIANT, 1)
            }
            assert plane.slots.arm(NAME, "treatment") is None
        finally:
            await plane.stop()

    asyncio.run(scenario())
    assert plane.recorder is not None
    counted = {c.variant: c.requests for c in plane.recorder.counts()}
    assert counted["control"] + counted["treatment"] == 410
    assert sum(c.missing_key for c in plane.recorder.counts()) == 10
    missing = plane.metrics.registry.get_sample_value(
        "modelreg_serving_missing_routing_key_total", {"model": NAME}
    )
    assert missing == 10


def test_a_stopped_experiment_answers_with_control_and_counts_nothing(
    saved: dict[int, Path], tmp_path: Path
) -> None:
    stopped = route(NAME, traffic=0.5, state=ExperimentState.STOPPED, control_alias=None)
    plane = _plane(Models(NAME, saved), Experiments({NAME: stopped}), tmp_path)

    async def scenario() -> None:
        await plane.start()
        try:
            answers = {_who(await _ask(plane, f"user-{i}")) for i in range(100)}
            assert answers == {("control", 1)}
            # Control pinned (no alias): its own slot; the treatment is not loaded at all.
            assert plane.slots.arm(NAME, "control") is not None
            assert plane.slots.arm(NAME, "treatment") is None
        finally:
            await plane.stop()

    asyncio.run(scenario())
    assert plane.recorder is not None and plane.recorder.counts() == []


def test_a_treatment_that_cannot_load_sends_everyone_to_control_and_degrades(
    saved: dict[int, Path], tmp_path: Path
) -> None:
    models = Models(NAME, saved, broken={2})
    plane = _plane(models, Experiments({NAME: route(NAME, traffic=0.5)}), tmp_path)

    async def scenario() -> None:
        await plane.start()
        try:
            answers = {_who(await _ask(plane, f"user-{i}")) for i in range(100)}
            assert answers == {("control", 1)}
            assert plane.ready
            versions = plane.versions()
            assert versions["degraded"] is True
            [reason] = versions["experiments"][NAME]["reasons"]
            assert "treatment v2 is not loaded; its keys go to control" in reason
            degraded = plane.metrics.registry.get_sample_value(
                "modelreg_serving_experiment_degraded", {"model": NAME}
            )
            assert degraded == 1

            models.broken.clear()  # fixed: the next (forced) check loads it
            await plane.slots.check_all(force=True)
            answers = {_who(await _ask(plane, f"user-{i}")) for i in range(100)}
            assert answers == {("control", 1), ("treatment", 2)}
            assert plane.versions()["degraded"] is False
        finally:
            await plane.stop()

    asyncio.run(scenario())


def test_a_control_that_cannot_load_leaves_the_default_variant_serving(
    saved: dict[int, Path], tmp_path: Path
) -> None:
    pinned = route(NAME, traffic=0.5, control=3, control_alias=None)
    plane = _plane(Models(NAME, saved, broken={3}), Experiments({NAME: pinned}), tmp_path)

    async def scenario() -> None:
        await plane.start()
        try:
            answers = {_who(await _ask(plane, f"user-{i}")) for i in range(50)}
            assert answers == {(DEFAULT_VARIANT, 1)}
            [reason] = plane.versions()["experiments"][NAME]["reasons"]
            assert reason == "control v3 is not loaded; experiment not routed"
        finally:
            await plane.stop()

    asyncio.run(scenario())
    assert plane.recorder is not None and plane.recorder.counts() == []


def test_shadow_scores_the_treatment_but_never_answers_with_it(
    saved: dict[int, Path], tmp_path: Path
) -> None:
    experiments = Experiments({NAME: route(NAME, traffic=0.5, shadow=True)})
    plane = _plane(Models(NAME, saved), experiments, tmp_path)

    async def scenario() -> None:
        await plane.start()
        try:
            answers = {_who(await _ask(plane, f"user-{i}", f"r{i}")) for i in range(100)}
            assert answers == {("control", 1)}
            await plane.shadow.join()
        finally:
            await plane.stop()

    asyncio.run(scenario())
    assert plane.recorder is not None
    counts = {c.variant: c for c in plane.recorder.counts()}
    assert counts["control"].requests == 100
    shadowed = counts["treatment"]
    assert 30 < shadowed.requests < 70 and shadowed.version == 2
    assert shadowed.prediction_sum == 2.0 * shadowed.requests  # the treatment did score
    scored = plane.metrics.registry.get_sample_value(
        "modelreg_serving_shadow_requests_total",
        {"model": NAME, "variant": "treatment", "version": "2", "result": "ok"},
    )
    assert scored == shadowed.requests
    assert {r.variant for r in experiments.logged} == {"control", "treatment"}  # shutdown flush


def test_arms_swap_without_dropped_requests(saved: dict[int, Path], tmp_path: Path) -> None:
    experiments = Experiments()
    plane = _plane(Models(NAME, saved), experiments, tmp_path)
    first = route(NAME, traffic=0.5)
    # Start, replace the treatment's version (a new slot for the same variant), conclude.
    changes = [first, ramped(first, treatments=(Arm("treatment", 3),)), None]

    async def traffic(stop: asyncio.Event, seen: list[tuple[str, int]]) -> None:
        i = 0
        while not stop.is_set():
            seen.append(_who(await _ask(plane, f"user-{i % 300}", f"r{i}")))
            i += 1

    async def scenario() -> list[tuple[str, int]]:
        await plane.start()
        seen: list[tuple[str, int]] = []
        stop = asyncio.Event()
        try:
            clients = [asyncio.create_task(traffic(stop, seen)) for _ in range(8)]
            for change in changes:
                experiments.routes[NAME] = change
                await plane.slots.check_all(force=False)
                await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*clients)  # _who raised if any answer was an error
        finally:
            await plane.stop()
        return seen

    seen = set(asyncio.run(scenario()))
    assert {("control", 1), ("treatment", 2), ("treatment", 3), (DEFAULT_VARIANT, 1)} <= seen


@pytest.fixture
def served(saved: dict[int, Path], tmp_path: Path) -> Iterator[tuple[httpx.Client, Experiments]]:
    """A real uvicorn server with a 50% experiment keyed on X-Account."""
    experiments = Experiments({NAME: route(NAME, traffic=0.5, key_header="X-Account")})
    config = _config(tmp_path, flush_interval=3600, reload_token="t" * 20)
    app = create_app(
        config, Models(NAME, saved), experiments=experiments, metrics_registry=CollectorRegistry()
    )
    with uvicorn_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http, experiments


def _post(http: httpx.Client, path: str, body: Any, **headers: str) -> httpx.Response:
    return http.post(path, content=json.dumps(body).encode(), headers=headers)


def test_http_answers_carry_the_variant_and_metrics_carry_the_version(
    served: tuple[httpx.Client, Experiments],
) -> None:
    http, experiments = served
    seen = set()
    for i in range(60):
        answer = http.post("/invocations", content=BODY, headers={
            "Content-Type": "application/json", "X-Account": f"acct-{i}"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        seen.add((answer.headers["X-Variant"], answer.headers["X-Model-Version"]))
        assert answer.json()["predictions"][0] == float(answer.headers["X-Model-Version"])
    assert seen == {("control", "1"), ("treatment", "2")}
    missing = http.post("/invocations", content=BODY, headers={"Content-Type": "application/json"})
    assert missing.status_code == 200

    text = http.get("/metrics").text
    treatment = f'model="{NAME}",variant="treatment",version="2"'
    control = f'model="{NAME}",variant="control",version="1"'
    assert f'modelreg_serving_requests_total{{code="200",{treatment}}}' in text
    assert f"modelreg_serving_request_seconds_count{{{control}}}" in text
    assert f"modelreg_serving_prediction_sum{{{treatment}}}" in text
    assert f'modelreg_serving_missing_routing_key_total{{model="{NAME}"}} 1.0' in text
    reloaded = http.post("/-/reload", headers={"Authorization": "Bearer " + "t" * 20})
    assert reloaded.status_code == 200
    assert reloaded.json()["experiments"][NAME]["id"] == "exp-1"
    del experiments


def test_feedback_statuses(served: tuple[httpx.Client, Experiments]) -> None:
    http, experiments = served
    answer = http.post("/invocations", content=BODY, headers={
        "Content-Type": "application/json", "X-Request-ID": "req-1"})  # fmt: skip
    assert answer.status_code == 200

    def feedback(body: Any) -> httpx.Response:
        return _post(http, "/feedback", body, **{"Content-Type": "application/json"})

    first = feedback({"request_id": "req-1", "label": 1})
    assert first.status_code == 200, first.text
    assert first.json() == {"request_id": "req-1", "result": "recorded"}
    assert [r.request_id for r in experiments.logged] == ["req-1"]  # written before the join
    assert feedback({"request_id": "req-1", "label": 1}).json()["result"] == "duplicate"
    assert feedback({"request_id": "req-1", "label": 0}).status_code == 409
    assert feedback({"request_id": "nobody", "value": 2.5}).status_code == 404
    experiments.expired.add("old")
    assert feedback({"request_id": "old", "value": 2.5}).status_code == 410
    bad_bodies = (
        {"request_id": "req-1"},
        {"label": 1},
        {"request_id": "r", "value": "x"},
        {"request_id": "a b", "label": 1},
        {"request_id": "r", "value": 1, "extra": 2},
        [1],
    )
    for bad in bad_bodies:
        refused = feedback(bad)
        assert refused.status_code == 400, bad
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "give a label, a value or both" in feedback({"request_id": "r"}).json()["message"]
    too_big = feedback({"request_id": "r", "label": "x" * 20_000})
    assert too_big.status_code == 413


def test_without_an_experiment_source_feedback_is_not_found_and_routing_is_default(
    saved: dict[int, Path], tmp_path: Path
) -> None:
    app = create_app(_config(tmp_path), Models(NAME, saved), metrics_registry=CollectorRegistry())
    with uvicorn_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        answer = http.post("/invocations", content=BODY, headers={
            "Content-Type": "application/json", "X-User-ID": "u1"})  # fmt: skip
        assert (answer.headers["X-Variant"], answer.headers["X-Model-Version"]) == ("default", "1")
        refused = _post(http, "/feedback", {"request_id": "r", "label": 1})
        assert refused.status_code == 404
        assert "without an experiment source" in refused.json()["message"]


def test_counts_are_flushed_on_shutdown(saved: dict[int, Path], tmp_path: Path) -> None:
    experiments = Experiments({NAME: route(NAME, traffic=0.5)})
    app = create_app(
        _config(tmp_path, flush_interval=3600),
        Models(NAME, saved),
        experiments=experiments,
        metrics_registry=CollectorRegistry(),
    )
    with uvicorn_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        for i in range(40):
            http.post("/invocations", content=BODY, headers={
                "Content-Type": "application/json", "X-User-ID": f"u{i}"})  # fmt: skip
        assert experiments.count_calls == 0  # the interval has not passed
    assert sum(experiments.totals().values()) == 40
    [replica] = experiments.counts
    assert "/" in replica
    assert len(experiments.logged) == 40
