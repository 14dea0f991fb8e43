"""Helpers for the model-server tests: tiny models with distinct artifacts, `modelreg serve`.

The servers are real subprocesses started with the same CLI users run,
health-checked through :class:`modelreg.stack.ServiceProcess`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import mlflow
from prometheus_client import CollectorRegistry
from sklearn.tree import DecisionTreeClassifier

from integration.registry_helpers import labels, training_frame
from modelreg.domain import Stage
from modelreg.registry import Registry
from modelreg.serving.config import ModelConfig
from modelreg.serving.loader import ModelLoader
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.router import DEFAULT_VARIANT
from modelreg.serving.slots import ModelSlot
from modelreg.stack import ServiceProcess, free_port
from services import Backend, cli_argv

RELOAD_TOKEN = "serving-test-reload-token-0123456789"


@dataclass(frozen=True)
class Server:
    """A running `modelreg serve` and an HTTP client pointed at it."""

    url: str
    process: ServiceProcess
    http: httpx.Client

    def score(self, body: Any, path: str = "/invocations", **kwargs: Any) -> httpx.Response:
        """POST a JSON scoring body."""
        return self.http.post(path, json=body, **kwargs)


@contextmanager
def tracking(backend: Backend) -> Iterator[None]:
    """Point MLflow's fluent API at ``backend`` for a block (module-scoped fixtures)."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(backend.tracking_uri)
    try:
        yield
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run(status="KILLED")
        mlflow.set_tracking_uri(previous)


def register_trees(registry: Registry, backend: Backend, name: str, depths: list[int]) -> None:
    """Register one DecisionTree per depth as versions 1, 2, ... (distinct artifacts)."""
    frame = training_frame(0)
    with tracking(backend):
        for depth in depths:
            model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(
                frame, labels(frame)
            )
            with mlflow.start_run():
                registry.register(model, name=name, training_data=frame)


@contextmanager
def serving(
    backend: Backend, home: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Run `modelreg serve ARGS` on a free port until the block ends.

    One worker process unless ARGS say otherwise: the default is one per core,
    and the tests read metrics, reload counts and /version from one process.
    """
    port = free_port()
    workers = () if "--workers" in args else ("--workers", "1")
    argv = [
        sys.executable,
        "-c",
        "from modelreg.cli import run; run()",
        *cli_argv(backend, home, "serve", *args, *workers, "--port", str(port)),
    ]
    url = f"http://127.0.0.1:{port}"
    process = ServiceProcess(
        "modelreg-serve",
        argv,
        health_url=f"{url}/ping",
        env={"MODELREG_RELOAD_TOKEN": "", **(env or {})},
        log_path=home / "serve.log",
    )
    with process, httpx.Client(base_url=url, trust_env=False, timeout=30) as http:
        yield Server(url, process, http)


def unique_name(prefix: str) -> str:
    """A model name no other test uses."""
    return f"{prefix}-{uuid4().hex[:10]}"


def to_production(registry: Registry, name: str, version: int) -> None:
    """Promote ``version`` through Staging to Production, as the lifecycle requires."""
    registry.promote(name, version, Stage.STAGING, reason="serving tests")
    registry.promote(name, version, Stage.PRODUCTION, reason="serving tests")


class NoSource:
    """A model source these tests never reach: any call fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the source was asked for {name}")


def slot(name: str, variant: str = DEFAULT_VARIANT) -> ModelSlot:
    """A slot of ``variant`` of model ``name`` that never loads anything (pure-logic tests)."""
    source: Any = NoSource()
    return ModelSlot(
        ModelConfig(name=name),
        source,
        ModelLoader(source, Path("/nonexistent")),
        ServingMetrics(CollectorRegistry()),
        variant=variant,
    )
