"""Helpers for the registry integration tests: tiny data sets and quick versions."""

from __future__ import annotations

import contextlib
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from sklearn.linear_model import LogisticRegression

from modelreg import policy
from modelreg.registry import Registry
from services import Backend

COLUMNS = ["amount", "age", "score"]


def training_frame(
    seed: int = 0, rows: int = 120, columns: list[str] | None = None
) -> pd.DataFrame:
    """A small numeric training frame; ``seed`` changes the data, not the schema."""
    rng = np.random.default_rng(seed)
    cols = columns or COLUMNS
    return pd.DataFrame(rng.normal(size=(rows, len(cols))), columns=cols)


def labels(frame: pd.DataFrame) -> np.ndarray:
    """Labels that depend on the first column."""
    return (frame.iloc[:, 0] > 0).astype(int).to_numpy()


_LOGGED: dict[str, tuple[str, str]] = {}


def _logged_model(backend: Backend) -> tuple[str, str]:
    """One tiny logged model per backend, reused as the source of quick versions."""
    if backend.tracking_uri not in _LOGGED:
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(backend.tracking_uri)
        frame = training_frame()
        try:
            with mlflow.start_run() as run:
                info = mlflow.sklearn.log_model(
                    LogisticRegression().fit(frame, labels(frame)),
                    name="model",
                    input_example=frame.head(2),
                )
        finally:
            mlflow.set_tracking_uri(previous)
        _LOGGED[backend.tracking_uri] = (info.model_uri, run.info.run_id)
    return _LOGGED[backend.tracking_uri]


def create_versions(
    backend: Backend, registry: Registry, name: str, count: int, *, adopt: bool = True
) -> list[int]:
    """Create ``count`` versions with a plain MlflowClient, as MLflow users do; adopt them."""
    uri, run_id = _logged_model(backend)
    client = MlflowClient(backend.tracking_uri)
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.create_registered_model(name)  # already there on a second call
    model_id = uri.removeprefix("models:/")
    numbers = [
        int(client.create_model_version(name, uri, run_id=run_id, model_id=model_id).version)
        for _ in range(count)
    ]
    if adopt:
        registry.sync(name)
    return numbers


POLICY_USERS = """"ann" = "admin"
alice = "approver"
connie = "contributor"
victor = "viewer"
"""


def overwrite_artifact(backend: Backend, name: str, version: int, forged: Path) -> None:
    """Replace one file of a stored version through the artifact store itself (tampering)."""
    location = MlflowClient(backend.tracking_uri).get_model_version_download_uri(name, str(version))
    get_artifact_repository(location, tracking_uri=backend.tracking_uri).log_artifact(str(forged))


def write_policy(registry: Registry, extra: str = "") -> None:
    """The starter policy: ann admin, alice approver, connie contributor, victor viewer.

    Users not listed (bob, carol) get the starter's default role, approver; API callers
    who send no identity ("anonymous") get its anonymous_role, viewer.
    """
    text = policy.starter(["ann"]).replace('"ann" = "admin"\n', POLICY_USERS)
    registry.settings.resolved_policy_file().write_text(text + extra, encoding="utf-8")


def production(registry: Registry, name: str) -> int | None:
    """Which version MLflow's production alias points at (None if unset)."""
    aliases = MlflowClient(registry.gateway.tracking_uri).get_registered_model(name).aliases
    return int(aliases["production"]) if "production" in aliases else None
