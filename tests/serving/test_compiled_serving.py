"""Compiled runtimes in the model server, against real services.

A version is served by ONNX Runtime only after its compiled form answered
like the original on the verification rows; the verification is a COMPILE
ledger event, shown by ``/version``, ``show`` and the metrics. A stored
compiled form that differs from the recorded sha256 is refused, as is one
that disagrees with the original, and anything unsupported is served by the
MLflow pyfunc. The compiled form survives reloads and promotions without a
failed request.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from serving_helpers import Server, serving, to_production, tracking, unique_name
from sklearn.ensemble import RandomForestClassifier
from sklearn.kernel_ridge import KernelRidge

from integration.registry_helpers import COLUMNS, labels, training_frame
from modelreg.domain import Action, CompileDetails
from modelreg.errors import CompilationError, PayloadError
from modelreg.registry import Registry
from modelreg.serving import compiled as onnx
from modelreg.serving.config import ModelConfig
from modelreg.serving.loader import ModelLoader
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.slots import CheckResult, ModelSlot
from services import Backend

pytestmark = pytest.mark.integration

# A promotion is served within about poll_interval + load (and compile) time; only a test timeout.
PICKUP_TIMEOUT = 30.0


def _register_forest(registry: Registry, backend: Backend, name: str, seed: int) -> int:
    """Register a small forest (distinct artifacts per seed); return its version."""
    frame = training_frame(seed, rows=400)
    model = RandomForestClassifier(n_estimators=15, max_depth=6, random_state=seed)
    model.fit(frame, labels(frame))
    with tracking(backend), mlflow.start_run():
        view = registry.register(model, name=name, training_data=frame)
    return view.version


def _held_out(rows: int = 40) -> pd.DataFrame:
    return training_frame(99, rows=rows)


def _score(server: Server, frame: pd.DataFrame) -> httpx.Response:
    body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
    return server.score(body)


def _runtime(server: Server) -> dict[str, Any]:
    models = server.http.get("/version").json()["models"]
    slot = next(iter(models.values())) if isinstance(models, dict) else models[0]
    runtime: dict[str, Any] = slot["runtime"]
    return runtime


def _compile_events(registry: Registry, name: str, version: int) -> list[Any]:
    return [e for e in registry.ledger.events(name, version=version) if e.action is Action.COMPILE]


@pytest.fixture
def forest(backend: Backend, module_registry: Registry) -> tuple[str, int]:
    """A registered forest in Production."""
    name = unique_name("compiled")
    version = _register_forest(module_registry, backend, name, seed=1)
    to_production(module_registry, name, version)
    return name, version


def test_a_forest_is_served_compiled_after_verification_and_recorded_once(
    backend: Backend, module_registry: Registry, forest: tuple[str, int], tmp_path: Path
) -> None:
    name, version = forest
    held_out = _held_out()
    with tracking(backend):
        original = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        expected = np.asarray(original.predict(held_out)).tolist()

    with serving(backend, tmp_path, name) as server:
        answer = _score(server, held_out)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected}
        runtime = _runtime(server)
        assert runtime["name"] == "onnxruntime", runtime
        # No rows: the original answers, as without compilation (scikit-learn refuses them).
        empty = _score(server, held_out.iloc[:0])
        assert empty.status_code == 400 and "0 sample(s)" in empty.text, empty.text
        check = runtime["verification"]
        assert check["passed"] is True
        assert check["rows"] >= 2
        assert check["max_abs_diff"] <= check["tolerance"] == 1e-5
        assert check["compiled_digest"].startswith("sha256:")
        assert check["converters"]["skl2onnx"]
        metrics = server.http.get("/metrics").text
        assert (
            f'modelreg_serving_runtime_info{{model="{name}",runtime="onnxruntime",'
            'variant="default"} 1.0' in metrics
        )
        assert "modelreg_serving_compiled_max_abs_diff" in metrics

    events = _compile_events(module_registry, name, version)
    assert len(events) == 1
    assert events[0].details["compiled_digest"] == check["compiled_digest"]
    assert events[0].digest == module_registry.show(name, version).digest

    # A restart reuses the stored compiled form (same sha256): no second event.
    with serving(backend, tmp_path, name) as server:
        assert _runtime(server)["name"] == "onnxruntime"
        assert _score(server, held_out).json() == {"predictions": expected}
    assert len(_compile_events(module_registry, name, version)) == 1

    shown = module_registry.show(name, version).compiled
    assert isinstance(shown, CompileDetails)
    assert shown.compiled_digest == check["compiled_digest"]
    # The verified form is kept beside the version, among its run's artifacts.
    assert shown.artifact_uri.startswith("runs:/")
    assert shown.artifact_uri.endswith("/model.onnx")


# scikit-learn casts 1e39 to float32 (a RuntimeWarning) before refusing it.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_another_server_fetches_the_recorded_form_instead_of_converting(
    backend: Backend,
    module_registry: Registry,
    forest: tuple[str, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, version = forest
    first, loaded = _loaded(module_registry, tmp_path / "first", name, version)
    recorded = first.compile(loaded).runtime.details
    assert recorded is not None and recorded.artifact_uri

    def no_converting(_pyfunc: Any, _columns: Any) -> Any:
        raise AssertionError("the recorded form should have been fetched")

    monkeypatch.setattr(onnx, "compile_pyfunc", no_converting)
    second, again = _loaded(module_registry, tmp_path / "second", name, version)
    served = second.compile(again)
    assert served.runtime.name == "onnxruntime", served.runtime
    assert served.runtime.details is not None
    assert served.runtime.details.compiled_digest == recorded.compiled_digest
    assert len(_compile_events(module_registry, name, version)) == 1
    held_out = _held_out()
    assert served.predict(held_out, None).tolist() == loaded.pyfunc.predict(held_out).tolist()
    # Finite in float64 but past float32 (the forest's input type): the original's 400.
    with pytest.raises(PayloadError, match="too large"):
        served.predict(np.array([[1e39, 0.0, 0.0]]), None)


def test_a_changed_stored_compiled_form_is_refused_and_the_pyfunc_serves(
    backend: Backend, module_registry: Registry, forest: tuple[str, int], tmp_path: Path
) -> None:
    name, version = forest
    with serving(backend, tmp_path, name) as server:
        assert _runtime(server)["name"] == "onnxruntime"
    digest = module_registry.show(name, version).digest
    assert digest is not None
    stored = tmp_path / "serving-cache" / f"{digest.removeprefix('sha256:')}.onnx"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))

    with serving(backend, tmp_path, name) as server:
        runtime = _runtime(server)
        assert runtime["name"] == "pyfunc"
        assert "does not match the sha256 the ledger recorded" in runtime["reason"]
        assert _score(server, _held_out()).status_code == 200
        assert 'result="fallback"' in server.http.get("/metrics").text
    assert "does not match the sha256" in (tmp_path / "serve.log").read_text()


def test_the_compiled_form_survives_a_promotion_under_load_without_a_failed_request(
    backend: Backend, module_registry: Registry, forest: tuple[str, int], tmp_path: Path
) -> None:
    name, first = forest
    second = _register_forest(module_registry, backend, name, seed=2)
    held_out = _held_out(3)
    with serving(backend, tmp_path, name, "--poll-interval", "0.3") as server:
        assert _runtime(server)["name"] == "onnxruntime"
        stop = threading.Event()
        seen: list[tuple[int, str | None]] = []

        def hammer() -> None:
            body = {"dataframe_split": {"columns": COLUMNS, "data": held_out.values.tolist()}}
            with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
                while not stop.is_set():
                    response = http.post("/invocations", json=body)
                    seen.append((response.status_code, response.headers.get("X-Model-Version")))

        clients = [threading.Thread(target=hammer) for _ in range(4)]
        for client in clients:
            client.start()
        try:
            to_production(module_registry, name, second)
            deadline = time.monotonic() + PICKUP_TIMEOUT
            while _score(server, held_out).headers["X-Model-Version"] != str(second):
                assert time.monotonic() < deadline, "the promotion was not served"
                time.sleep(0.05)
            time.sleep(0.3)
        finally:
            stop.set()
            for client in clients:
                client.join()
        assert {status for status, _ in seen} == {200}
        assert {version for _, version in seen} == {str(first), str(second)}
        runtime = _runtime(server)
        assert runtime["name"] == "onnxruntime"
        assert len(_compile_events(module_registry, name, second)) == 1


# -- the loader's choices, in-process against the real registry ------------------------


def _loaded(registry: Registry, tmp_path: Path, name: str, version: int) -> Any:
    loader = ModelLoader(registry, tmp_path / "cache")
    loaded = loader.load(name, version)
    loaded.warm_up()
    return loader, loaded


def test_a_mis_converted_form_is_refused_recorded_and_the_pyfunc_serves(
    backend: Backend,
    module_registry: Registry,
    forest: tuple[str, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, version = forest
    # The converter "produces" another forest's model: same inputs and outputs, other answers.
    frame = training_frame(7, rows=400)
    other = RandomForestClassifier(n_estimators=15, max_depth=6, random_state=7)
    other.fit(frame, 1 - labels(frame))
    other_dir = tmp_path / "other"
    with tracking(backend):
        mlflow.sklearn.save_model(
            other, other_dir, input_example=frame.head(2), skops_trusted_types=_trusted(other)
        )
    wrong = onnx.compile_pyfunc(mlflow.pyfunc.load_model(str(other_dir)), COLUMNS)
    monkeypatch.setattr(onnx, "compile_pyfunc", lambda _pyfunc, _columns: wrong)

    loader, loaded = _loaded(module_registry, tmp_path, name, version)
    served = loader.compile(loaded)
    assert served.compiled is None
    assert served.runtime.name == "pyfunc"
    assert "disagrees with the original" in served.runtime.reason
    assert served.runtime.details is not None and not served.runtime.details.passed
    held_out = _held_out()
    assert served.predict(held_out, None).tolist() == loaded.pyfunc.predict(held_out).tolist()
    events = _compile_events(module_registry, name, version)
    assert [e.details["passed"] for e in events] == [False]
    assert not list((tmp_path / "cache").glob("*.onnx"))  # a refused form is never stored

    with pytest.raises(CompilationError, match="compilation is required"):
        loader.compile(loaded, "require")


def _trusted(model: Any) -> list[str]:
    from modelreg.registration import trusted_types

    return trusted_types(model)


def test_an_unsupported_model_falls_back_unless_compilation_is_required(
    backend: Backend, module_registry: Registry, tmp_path: Path
) -> None:
    # scikit-learn's KernelRidge has no ONNX converter (skl2onnx 1.20).
    name = unique_name("compiled-unsupported")
    frame = training_frame(3, rows=50)
    model = KernelRidge(alpha=0.5).fit(frame, frame.iloc[:, 0])
    with tracking(backend), mlflow.start_run():
        module_registry.register(model, name=name, training_data=frame)
    loader, loaded = _loaded(module_registry, tmp_path, name, 1)

    served = loader.compile(loaded)
    assert served.runtime.name == "pyfunc"
    assert served.runtime.outcome == "fallback"
    assert served.runtime.reason
    assert loader.compile(loaded, "off").runtime.outcome == "off"

    # Required: the slot refuses the version (nothing else to serve here: not ready).
    slot = ModelSlot(
        ModelConfig(name=name, version=1, compile="require"),
        module_registry,
        loader,
        ServingMetrics(CollectorRegistry()),
    )
    assert _run(slot.check()) is CheckResult.FAILED
    assert slot.current is None
    assert slot.last_error is not None
    assert "compilation is required" in slot.last_error.message


def _run(coroutine: Any) -> Any:
    import asyncio

    return asyncio.run(coroutine)
