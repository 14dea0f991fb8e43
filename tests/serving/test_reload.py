"""Dynamic reload on a real port: promotions are picked up, tampered versions are refused."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from serving_helpers import (
    RELOAD_TOKEN,
    Server,
    register_trees,
    serving,
    to_production,
    unique_name,
)

from integration.registry_helpers import create_versions, training_frame
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration

# Promotions are served within about poll_interval + load time; this is only a
# timeout for the test, not a latency claim (bench/ measures that).
PICKUP_TIMEOUT = 5.0


def _body() -> dict[str, Any]:
    return {"dataframe_records": training_frame(3, rows=2).to_dict(orient="records")}


def _wait_for_version(server: Server, version: str, timeout: float = PICKUP_TIMEOUT) -> float:
    """Score until answers come from ``version``; return how long that took."""
    started = time.monotonic()
    while True:
        response = server.score(_body())
        assert response.status_code == 200, response.text
        if response.headers["X-Model-Version"] == version:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"still serving v{response.headers}"
        time.sleep(0.05)


def test_promotions_through_modelreg_and_plain_mlflow_are_served(
    backend: Backend, module_registry: Registry, tmp_path: Path
) -> None:
    name = unique_name("reload")
    create_versions(backend, module_registry, name, 2)
    to_production(module_registry, name, 1)
    with serving(backend, tmp_path, name, "--poll-interval", "0.5") as server:
        assert server.score(_body()).headers["X-Model-Version"] == "1"

        # Clients scoring throughout the swap all get answers, old version then new.
        stop = threading.Event()
        seen: list[tuple[int, str]] = []

        def hammer() -> None:
            with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
                while not stop.is_set():
                    response = http.post("/invocations", json=_body())
                    seen.append((response.status_code, response.headers.get("X-Model-Version")))

        clients = [threading.Thread(target=hammer) for _ in range(4)]
        for client_thread in clients:
            client_thread.start()
        try:
            to_production(module_registry, name, 2)
            _wait_for_version(server, "2")
            time.sleep(0.3)
        finally:
            stop.set()
            for client_thread in clients:
                client_thread.join()
        assert {status for status, _ in seen} == {200}
        assert {version for _, version in seen} == {"1", "2"}

        # A version registered and promoted with a plain MLflow client, unknown to
        # the ledger: the server adopts it (sync) and serves it.
        client = MlflowClient(backend.tracking_uri)
        first = client.get_model_version(name, "1")
        fresh = client.create_model_version(
            name, first.source, run_id=first.run_id, model_id=first.source.removeprefix("models:/")
        )
        client.set_registered_model_alias(name, "production", fresh.version)
        _wait_for_version(server, str(fresh.version), timeout=PICKUP_TIMEOUT + 10)
        assert module_registry.show(name, int(fresh.version)).semver is not None

        status = server.http.get("/version").json()["models"][0]
        assert status["version"] == int(fresh.version)
        assert status["degraded"] is False
        # No reload token configured: the admin endpoint does not exist.
        assert server.http.post("/-/reload").status_code == 404


def _tamper(backend: Backend, name: str, version: int, tmp_path: Path) -> None:
    """Overwrite MLmodel of a stored version through the artifact store itself."""
    location = MlflowClient(backend.tracking_uri).get_model_version_download_uri(name, str(version))
    repo = get_artifact_repository(location, tracking_uri=backend.tracking_uri)
    forged = tmp_path / "forged" / "MLmodel"
    forged.parent.mkdir()
    forged.write_text("artifact_path: model\nflavors: {}\n")
    repo.log_artifact(str(forged))


def _metric(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_a_tampered_version_is_refused_and_the_old_one_keeps_serving(
    backend: Backend, module_registry: Registry, tmp_path: Path
) -> None:
    name = unique_name("tamper")
    register_trees(module_registry, backend, name, [2, 3])
    to_production(module_registry, name, 1)
    env = {"MODELREG_RELOAD_TOKEN": RELOAD_TOKEN}
    with serving(backend, tmp_path, name, "--poll-interval", "0.5", env=env) as server:
        _tamper(backend, name, 2, tmp_path)
        to_production(module_registry, name, 2)

        deadline = time.monotonic() + PICKUP_TIMEOUT
        while (error := server.http.get("/version").json()["models"][0]["last_error"]) is None:
            assert time.monotonic() < deadline, "the tampered version was never tried"
            time.sleep(0.1)
        assert error["version"] == 2
        assert "failed integrity verification" in error["message"]
        assert "modified: MLmodel" in error["message"]

        response = server.score(_body())
        assert response.status_code == 200
        assert response.headers["X-Model-Version"] == "1"
        status = server.http.get("/version").json()
        assert status["degraded"] is True
        assert status["models"][0]["version"] == 1
        ready = server.http.get("/v2/health/ready")
        assert ready.status_code == 200
        assert ready.json()["degraded"] is True
        assert any("version 2" in r for r in ready.json()["models"][name]["reasons"])
        assert server.http.get("/ping").status_code == 200

        text = server.http.get("/metrics").text
        failures = f'modelreg_serving_load_failures_total{{model="{name}",reason="integrity"'
        assert _metric(text, failures) >= 1
        assert _metric(text, f'modelreg_serving_degraded{{model="{name}"') == 1

        # A forced retry refuses it again instead of serving it.
        retried = server.http.post(
            "/-/reload", headers={"Authorization": f"Bearer {RELOAD_TOKEN}"}
        ).json()
        assert retried["results"] == {name: "failed"}
        assert server.score(_body()).headers["X-Model-Version"] == "1"
        assert "refused v2 (integrity)" in server.process.log_tail(50)


def test_several_worker_processes_each_serve_and_follow_promotions(
    backend: Backend, module_registry: Registry, tmp_path: Path
) -> None:
    name = unique_name("workers")
    create_versions(backend, module_registry, name, 2)
    to_production(module_registry, name, 1)
    with serving(backend, tmp_path, name, "--poll-interval", "0.5", "--workers", "2") as server:
        # uvicorn starts the workers as child processes, each with its own slot.
        started = (tmp_path / "serve.log").read_text().count("Started server process")
        assert started == 2
        assert {server.score(_body()).headers["X-Model-Version"] for _ in range(20)} == {"1"}
        to_production(module_registry, name, 2)
        # Each worker polls on its own; once both have swapped, only v2 answers.
        deadline = time.monotonic() + PICKUP_TIMEOUT
        while True:
            versions = [server.score(_body()).headers["X-Model-Version"] for _ in range(20)]
            if set(versions) == {"2"}:
                break
            assert time.monotonic() < deadline, versions
            time.sleep(0.1)
        # Each worker logs its loads like a single-process server (a spawned process
        # does not inherit the parent's logging set-up). The second may still have been
        # starting while the first answered everything above: both swap all the same.
        swapped = re.compile(r" INFO modelreg\.serving: \S+: now serving v2 \(")
        deadline = time.monotonic() + 60  # under load its first load alone took 17 s
        while len(swapped.findall(log := (tmp_path / "serve.log").read_text())) < 2:
            assert time.monotonic() < deadline, log
            time.sleep(0.2)


def test_a_forced_reload_asked_of_one_worker_reaches_every_worker(
    backend: Backend, module_registry: Registry, tmp_path: Path
) -> None:
    """The course's `--poll-interval 60`: without the worker group, only the worker that
    took the POST would serve the promotion; the other would keep answering the old
    version for up to a minute."""
    name = unique_name("group")
    create_versions(backend, module_registry, name, 2)
    to_production(module_registry, name, 1)
    env = {"MODELREG_RELOAD_TOKEN": RELOAD_TOKEN}
    args = ("--poll-interval", "60", "--workers", "2")
    with serving(backend, tmp_path, name, *args, env=env) as server:
        log = tmp_path / "serve.log"
        ready = re.compile(r" INFO modelreg\.serving: \S+: serving v1 \(")
        deadline = time.monotonic() + 60  # both workers loaded v1 before the promotion
        while len(ready.findall(log.read_text())) < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        to_production(module_registry, name, 2)
        answer = server.http.post(
            "/-/reload", headers={"Authorization": f"Bearer {RELOAD_TOKEN}"}
        ).json()
        # Both workers checked and loaded v2 before the answer was sent.
        assert answer["workers_pending"] == []
        assert list(answer["workers"].values()) == [{name: "reloaded"}] * 2, answer
        assert answer["results"] == {name: "reloaded"}
        assert answer["results"] == answer["workers"][answer["replica"]]  # who answered
        assert len(re.findall(r"now serving v2 \(", log.read_text())) == 2
        # New connections, spread by the kernel over both workers, all get v2.
        for _ in range(30):
            with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as fresh:
                response = fresh.post("/invocations", json=_body())
            assert response.headers["X-Model-Version"] == "2"
