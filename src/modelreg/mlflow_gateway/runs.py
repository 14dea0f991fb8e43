"""Runs: what produced a version, lineage and flavour logging, and the active run.

Registration logs into MLflow's *active run* through the fluent API
(``mlflow.log_text``, ``mlflow.sklearn.log_model``), which follows the process's
tracking URI; :meth:`RunCalls.run_context` is the one place that sets it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from modelreg.domain import LineageRecord
from modelreg.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    LineageError,
)
from modelreg.mlflow_gateway.connection import Connection
from modelreg.mlflow_gateway.registry import filter_literal
from modelreg.mlflow_gateway.rest import pairs

_PAGE = 1000
_RUN_CHUNK = 100  # run ids per search: a short IN list, well under SQLite's parameter limit
_VIEW_ALL = 3  # ViewType.ALL in MLflow's protos (the REST GET wants the number)


@dataclass(frozen=True)
class RunInfo:
    """Params, metrics and tags of the run that produced a version."""

    run_id: str
    experiment_id: str
    user_id: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    dataset_digests: tuple[tuple[str, str], ...] = ()


class RunCalls(Connection):
    """Runs and logging into them (a part of :class:`MlflowGateway`)."""

    def run_of(self, model_uri: str) -> str:
        """The run id behind ``runs:/<run_id>/<path>`` or ``models:/<model_id>``."""
        if model_uri.startswith("runs:/"):
            run_id = model_uri[len("runs:/") :].split("/", 1)[0]
            if run_id.isalnum() and self.run(run_id) is not None:
                return run_id
            raise InvalidInputError(f"no run {run_id!r} behind {model_uri!r}")
        if model_uri.startswith("models:/m-"):
            model_id = model_uri[len("models:/") :].split("/", 1)[0]
            logged = self._call(lambda: self.client.get_logged_model(model_id))
            return str(logged.source_run_id or "")
        raise InvalidInputError(
            f"unsupported model URI {model_uri[:80]!r}: use runs:/<run_id>/<path> "
            "or the models:/m-<id> URI that log_model returned"
        )

    def run(self, run_id: str) -> RunInfo | None:
        """The run that produced a version, or None if it is gone."""
        if not run_id:
            return None
        try:
            if self._rest is None:
                run = self._call(lambda: self.client.get_run(run_id))
            else:
                run = _run_entity(self._rest.get("runs/get", {"run_id": run_id}).get("run", {}))
        except (InvalidInputError, BackendError) as exc:
            if isinstance(exc, BackendUnavailableError):
                raise
            return None
        return _run_info(run)

    def runs(self, run_ids: Collection[str]) -> dict[str, RunInfo]:
        """The runs with these ids, by id, read with one run search per 100 ids.

        A page of versions read one run each (``runs/get``, about 7 ms apiece);
        ``search_runs`` with ``attributes.run_id IN (...)`` answers them together.
        MLflow's run search needs experiment ids, and a page's runs may be in any
        experiment, so the experiments are listed first (one call per 1,000,
        deleted ones included, as :meth:`run` finds runs of deleted experiments
        and deleted runs). Ids MLflow does not know, and empty ones, are left out.
        """
        literals = sorted({text for i in run_ids if i and (text := filter_literal(i))})
        if not literals:
            return {}
        experiments = self._experiment_ids()
        found: dict[str, RunInfo] = {}
        for start in range(0, len(literals), _RUN_CHUNK):
            chunk = literals[start : start + _RUN_CHUNK]
            text = f"attributes.run_id IN ({', '.join(chunk)})"
            found.update((r.info.run_id, _run_info(r)) for r in self._search(experiments, text))
        return found

    def _search(self, experiments: list[str], text: str) -> list[Any]:
        """Runs (deleted ones too) matching ``text``, which names at most _RUN_CHUNK of them."""
        if self._rest is None:
            from mlflow.entities import ViewType

            with self._errors():
                return list(
                    self.client.search_runs(
                        experiments, text, run_view_type=ViewType.ALL, max_results=_RUN_CHUNK
                    )
                )
        body = self._rest.post(
            "runs/search",
            {
                "experiment_ids": experiments,
                "filter": text,
                "run_view_type": "ALL",
                "max_results": _RUN_CHUNK,
            },
        )
        return [_run_entity(r) for r in body.get("runs", [])]

    def _experiment_ids(self) -> list[str]:
        """Every experiment's id, deleted ones included."""
        ids: list[str] = []
        token: str | None = None
        while True:
            if self._rest is None:
                from mlflow.entities import ViewType

                with self._errors():
                    page = self.client.search_experiments(
                        view_type=ViewType.ALL, max_results=_PAGE, page_token=token
                    )
                ids += [e.experiment_id for e in page]
                token = page.token or None
            else:
                body = self._rest.get(
                    "experiments/search",
                    {"view_type": _VIEW_ALL, "max_results": _PAGE, "page_token": token},
                )
                ids += [str(e.get("experiment_id")) for e in body.get("experiments", [])]
                token = body.get("next_page_token") or None
            if not token:
                return ids

    def run_lineage(self, run_id: str) -> LineageRecord | None:
        """The ``lineage.json`` modelreg logged into a run, if there is one."""
        from modelreg.lineage import record_from_json

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self._call(
                    lambda: self._mlflow().artifacts.download_artifacts(
                        run_id=run_id,
                        artifact_path="modelreg/lineage.json",
                        dst_path=tmp,
                        tracking_uri=self.tracking_uri,
                    )
                )
            except (InvalidInputError, BackendError) as exc:
                if isinstance(exc, BackendUnavailableError):
                    raise
                return None
            except OSError:
                return None
            try:
                return record_from_json(Path(path).read_text())
            except LineageError:
                return None

    def search_run_ids(self, filter_string: str) -> set[str]:
        """Ids of runs (in any experiment) matching an MLflow run filter."""
        with self._errors():
            experiments = [
                e.experiment_id for e in self.client.search_experiments(max_results=1000)
            ]
            ids: set[str] = set()
            token: str | None = None
            while True:
                page = self.client.search_runs(
                    experiments, filter_string, max_results=_PAGE, page_token=token
                )
                ids.update(run.info.run_id for run in page)
                token = page.token
                if not token:
                    return ids

    def log_lineage(
        self, record: LineageRecord, tags: Mapping[str, str], pip_freeze: str, datasets: list[Any]
    ) -> None:
        """Log lineage into the active run: JSON artifact, pip freeze, tags, params, datasets."""
        from modelreg.lineage import record_to_json

        mlflow = self._mlflow()
        with self._errors():
            run = mlflow.active_run()
            if run is None:
                raise LineageError("no active MLflow run to log lineage into")
            mlflow.log_text(record_to_json(record), "modelreg/lineage.json")
            mlflow.log_text(pip_freeze, "modelreg/requirements-freeze.txt")
            mlflow.set_tags(dict(tags))
            logged = self.client.get_run(run.info.run_id).data.params
            # MLflow refuses to overwrite a param with a different value.
            fresh = {k: v for k, v in record.params.items() if k not in logged}
            if fresh:
                mlflow.log_params(fresh)
            for dataset in datasets:
                mlflow.log_input(dataset, context="training")

    def pandas_dataset(self, frame: Any, name: str, digest: str) -> Any:
        """An MLflow dataset for a DataFrame, carrying modelreg's fingerprint as digest."""
        with self._errors():
            return self._mlflow().data.from_pandas(frame, name=name, digest=digest[:36])

    def log_sklearn(
        self,
        model: Any,
        signature: Any,
        input_example: Any,
        trusted_types: list[str],
        pip_requirements: list[str] | None = None,
    ) -> str:
        """Log an sklearn model into the active run (skops format) and return its URI.

        Without ``pip_requirements`` MLflow infers them (a subprocess that loads the model).
        """
        with self._errors():
            info = self._mlflow().sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=input_example,
                skops_trusted_types=trusted_types or None,
                pip_requirements=pip_requirements,
            )
        return str(info.model_uri)

    def log_pyfunc_flavor(self, flavor: str, model: Any, signature: Any, input_example: Any) -> str:
        """Log a model with another MLflow flavor (``mlflow.<flavor>.log_model``)."""
        module = getattr(self._mlflow(), flavor, None)
        if module is None or not hasattr(module, "log_model"):
            raise InvalidInputError(f"unknown MLflow flavor {flavor!r}")
        with self._errors():
            info = module.log_model(
                model, name="model", signature=signature, input_example=input_example
            )
        return str(info.model_uri)

    @contextlib.contextmanager
    def run_context(self, run_id: str | None, experiment: str | None) -> Iterator[str]:
        """Use the active run, resume ``run_id``, or start a new run; yield its id."""
        mlflow = self._mlflow()
        active = mlflow.active_run()
        if active is not None and run_id in (None, active.info.run_id):
            yield active.info.run_id
            return
        with self._errors():
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            if experiment:
                mlflow.set_experiment(experiment)
            run = mlflow.start_run(run_id=run_id)
        try:
            yield run.info.run_id
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run()


def _run_info(run: Any) -> RunInfo:
    """A RunInfo from MLflow's ``Run`` or :func:`_run_entity`'s look-alike."""
    digests = tuple(
        (d.dataset.name, d.dataset.digest)
        for d in ((run.inputs.dataset_inputs if run.inputs else None) or [])
    )
    return RunInfo(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        user_id=run.info.user_id or "",
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        dataset_digests=digests,
    )


def _run_entity(body: Mapping[str, Any]) -> SimpleNamespace:
    """A run from REST JSON, shaped like MLflow's ``Run`` (latest metric values)."""
    info, data = body.get("info", {}), body.get("data", {})
    inputs = [
        SimpleNamespace(
            dataset=SimpleNamespace(
                name=d["dataset"].get("name", ""), digest=d["dataset"].get("digest", "")
            )
        )
        for d in (body.get("inputs") or {}).get("dataset_inputs") or []
        if isinstance(d, dict) and isinstance(d.get("dataset"), dict)
    ]
    return SimpleNamespace(
        info=SimpleNamespace(
            run_id=info.get("run_id", ""),
            experiment_id=info.get("experiment_id", ""),
            user_id=info.get("user_id", ""),
        ),
        data=SimpleNamespace(
            params=pairs(data.get("params")),
            metrics={k: float(v) for k, v in pairs(data.get("metrics")).items()},
            tags=pairs(data.get("tags")),
        ),
        inputs=SimpleNamespace(dataset_inputs=inputs),
    )


def infer_signature(inputs: Any, outputs: Any) -> Any:
    """MLflow's signature inference, re-exported so callers need not import mlflow."""
    from mlflow.models import infer_signature as _infer

    return _infer(inputs, outputs)
