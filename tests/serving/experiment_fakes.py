"""In-memory sources for the experiment tests of the model server.

:class:`Models` is a :class:`~modelreg.serving.source.ModelSource` over real
pyfunc models saved on disk (version N predicts N for every row), with real
manifests, so slots load, verify and warm them exactly as they load
registry versions. :class:`Experiments` is an in-memory
:class:`~modelreg.serving.source.ExperimentSource` that keeps what the
server writes, standing in for the registry until its experiment methods
land. Neither imports the registry package.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import uvicorn
from mlflow.pyfunc import PythonModel

from modelreg.domain import ServingRecord
from modelreg.errors import (
    BackendError,
    ConflictError,
    ExpiredError,
    ModelNotReadyError,
    NotFoundError,
    VersionNotFoundError,
)
from modelreg.experiments.definition import (
    DEFAULT_KEY_HEADER,
    Arm,
    ExperimentRoute,
    ExperimentState,
    Feedback,
    FeedbackResult,
    PredictionRecord,
    VariantCounts,
    treatment_names,
)
from modelreg.integrity import Manifest, build_manifest
from modelreg.stack import free_port

FRAME = pd.DataFrame({"x": [1.0, 2.0]})


class VersionModel(PythonModel):
    """Predicts its own version number for every row (so answers name who answered)."""

    def __init__(self, version: int) -> None:
        self.version = version

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        """One float per row: the version."""
        return np.full(len(model_input), float(self.version))


def save_versions(root: Path, count: int) -> dict[int, Path]:
    """Save versions 1..count under ``root``; their directories by number."""
    saved = {}
    for version in range(1, count + 1):
        path = root / f"v{version}"
        mlflow.pyfunc.save_model(
            str(path), python_model=VersionModel(version), input_example=FRAME, pip_requirements=[]
        )
        saved[version] = path
    return saved


@dataclass
class Models:
    """A model source over saved versions of one model; ``broken`` versions cannot load."""

    name: str
    saved: dict[int, Path]
    aliases: dict[str, int] = field(default_factory=lambda: {"production": 1})
    broken: set[int] = field(default_factory=set)
    _manifests: dict[int, Manifest] = field(default_factory=dict)

    def alias_version(self, name: str, alias: str) -> int:
        """Where ``alias`` points."""
        self._model(name)
        if alias not in self.aliases:
            raise VersionNotFoundError(name, f"@{alias}")
        return self.aliases[alias]

    def serving_record(self, name: str, version: int) -> ServingRecord:
        """Semver and manifest of a saved version."""
        self._model(name)
        if version in self.broken:
            raise ModelNotReadyError(name, f"version {version} has no manifest (test)")
        if version not in self.saved:
            raise VersionNotFoundError(name, str(version))
        manifest = self._manifests.get(version)
        if manifest is None:
            manifest = self._manifests[version] = build_manifest(self.saved[version])
        return ServingRecord(name, version, f"{version}.0.0", manifest.digest, manifest)

    def download(self, name: str, version: int, dst: Path) -> Path:
        """Copy a saved version under ``dst``."""
        target = dst / "model"
        shutil.copytree(self.saved[version], target)
        return target

    def versions(self, name: str) -> Sequence[Any]:
        """No listing needed here."""
        return []

    def _model(self, name: str) -> None:
        if name != self.name:
            raise NotFoundError(f"no model {name!r}")


@dataclass
class Experiments:
    """An in-memory experiment source; ``failing`` makes every write raise BackendError."""

    routes: dict[str, ExperimentRoute | None] = field(default_factory=dict)
    counts: dict[str, list[VariantCounts]] = field(default_factory=dict)
    logged: list[PredictionRecord] = field(default_factory=list)
    outcomes: dict[str, Feedback] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    failing: bool = False
    count_calls: int = 0
    log_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def experiment(self, name: str) -> ExperimentRoute | None:
        """The route set for ``name``."""
        return self.routes.get(name)

    def record_variant_counts(self, replica: str, counts: Sequence[VariantCounts]) -> None:
        """Keep the replica's latest counts."""
        with self.lock:
            self.count_calls += 1
            if self.failing:
                raise BackendError("the ledger is down (test)")
            self.counts[replica] = list(counts)

    def log_predictions(self, records: Sequence[PredictionRecord]) -> None:
        """Append records, ignoring duplicates of (request id, variant)."""
        with self.lock:
            self.log_calls += 1
            if self.failing:
                raise BackendError("the ledger is down (test)")
            seen = {(r.request_id, r.variant) for r in self.logged}
            self.logged.extend(r for r in records if (r.request_id, r.variant) not in seen)

    def record_feedback(self, feedback: Feedback) -> FeedbackResult:
        """Join feedback to a logged prediction, as the ledger does."""
        with self.lock:
            if feedback.request_id in self.expired:
                raise ExpiredError(f"request {feedback.request_id} is past retention")
            if not any(r.request_id == feedback.request_id for r in self.logged):
                raise NotFoundError(f"no prediction logged for request {feedback.request_id}")
            known = self.outcomes.get(feedback.request_id)
            if known is None:
                self.outcomes[feedback.request_id] = feedback
                return FeedbackResult.RECORDED
            if known == feedback:
                return FeedbackResult.DUPLICATE
            raise ConflictError(f"request {feedback.request_id} already has another outcome")

    def totals(self) -> dict[str, int]:
        """Requests per variant, summed over replicas."""
        found: dict[str, int] = {}
        for counts in self.counts.values():
            for c in counts:
                found[c.variant] = found.get(c.variant, 0) + c.requests
        return found


def route(
    model: str,
    *,
    treatments: Sequence[int] = (2,),
    traffic: float = 0.1,
    state: ExperimentState = ExperimentState.RUNNING,
    shadow: bool = False,
    control: int = 1,
    control_alias: str | None = "production",
    revision: int = 1,
    experiment_id: str = "exp-1",
    key_header: str = DEFAULT_KEY_HEADER,
) -> ExperimentRoute:
    """An experiment route with sensible test defaults (one treatment, v2 vs v1 at 10%)."""
    names = treatment_names(len(treatments))
    return ExperimentRoute(
        id=experiment_id,
        model=model,
        state=state,
        control=Arm("control", control),
        control_alias=control_alias,
        treatments=tuple(Arm(n, v) for n, v in zip(names, treatments, strict=True)),
        traffic=traffic,
        key_header=key_header,
        shadow=shadow,
        revision=revision,
    )


def ramped(current: ExperimentRoute, **changes: Any) -> ExperimentRoute:
    """``current`` with ``changes`` and the next revision."""
    return replace(current, revision=current.revision + 1, **changes)


@contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a thread; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
