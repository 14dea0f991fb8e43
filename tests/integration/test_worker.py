"""`modelreg worker` runs the background loops alone; the API can leave them to it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from registry_helpers import create_versions

from modelreg.api.app import create_app
from modelreg.registry import Registry
from services import Backend

MODELREG = str(Path(sys.executable).with_name("modelreg"))
LEDGER_TAG = "modelreg.ledger"  # set on every version modelreg adopted


def _wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _adopted(backend: Backend, name: str, version: int) -> bool:
    """Whether modelreg adopted the version, read from MLflow (reading through modelreg adopts)."""
    tags = MlflowClient(backend.tracking_uri).get_model_version(name, str(version)).tags
    return LEDGER_TAG in tags


def test_a_standalone_worker_adopts_plain_mlflow_versions_and_stops_on_sigterm(
    backend: Backend, registry: Registry, model_name: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MODELREG_HOME": str(tmp_path),
        "MODELREG_TRACKING_URI": backend.tracking_uri,
        "MODELREG_LEDGER_URI": backend.ledger_uri,
        "MODELREG_SYNC_INTERVAL_SECONDS": "0.5",
        "MODELREG_WEBHOOK_INTERVAL_SECONDS": "0.5",
    }
    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [MODELREG, "worker", "--metrics-port", "0"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        ready = _wait_for(
            "the worker's ready line",
            lambda: (
                worker.poll() is None
                and re.search(r"/health and /metrics on (http://\S+)", log.read_text())
            ),
        )
        ops = ready.group(1)
        # Registered the way training code does it, with no modelreg in sight.
        (version,) = create_versions(backend, registry, model_name, 1, adopt=False)
        assert not _adopted(backend, model_name, version)
        _wait_for(
            "adoption by the worker", lambda: _adopted(backend, model_name, version), timeout=180
        )
        assert registry.show(model_name, version).semver == "1.0.0"

        # The round that adopted our version may still be adopting other models' leftovers
        # in the shared registry: wait for it to finish before reading its count.
        health = _wait_for(
            "the first completed sync round",
            lambda: (
                (answer := httpx.get(f"{ops}/health", timeout=10)).json()["loops"][
                    "background sync"
                ]["rounds"]
                >= 1
                and answer
            ),
            timeout=180,
        )
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["status"] == "ok"
        assert body["mlflow"] == body["ledger"] == "ok"
        assert body["loops"]["background sync"]["rounds"] >= 1
        assert body["loops"]["webhook delivery"]["healthy"] is True
        metrics = httpx.get(f"{ops}/metrics", timeout=10).text
        assert 'modelreg_api_loop_healthy{loop="background sync"} 1.0' in metrics
        assert 'modelreg_api_loop_rounds_total{loop="webhook delivery"}' in metrics
        assert httpx.get(f"{ops}/nothing", timeout=10).status_code == 404

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = log.read_text()
    assert "modelreg worker: stopped" in output
    assert "Traceback" not in output


def test_an_api_without_workers_runs_no_loops(
    backend: Backend, registry: Registry, model_name: str
) -> None:
    settings = registry.settings.model_copy(
        update={"api_runs_workers": False, "sync_interval_seconds": 0.1}
    )
    (version,) = create_versions(backend, registry, model_name, 1, adopt=False)
    with TestClient(create_app(settings, Registry(settings))) as api:
        time.sleep(1.0)  # ten sync intervals: an in-process sync would have adopted it
        health = api.get("/health")
        metrics = api.get("/metrics").text
    assert health.status_code == 200
    assert health.json()["loops"] == {}
    assert 'loop="' not in metrics  # the metric families are there, with no loop in them
    assert not _adopted(backend, model_name, version)
