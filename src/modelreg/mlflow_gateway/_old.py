"""The only module that talks to MLflow's client APIs.

Everything else in modelreg sees plain values (:class:`VersionInfo`,
:class:`RunInfo`) and modelreg errors, never MLflow entities or exceptions.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from modelreg.domain import LineageRecord, Stage
from modelreg.errors import (
    ArtifactsNotFoundError,
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    LineageError,
    ModelNotFoundError,
    ModelregError,
    VersionNotFoundError,
)
from modelreg.mlflow_rest import MlflowRest

T = TypeVar("T")


def _mlflow() -> Any:
    """The mlflow package, imported on first use: it takes ~1.4 s, and reads never need it."""
    import mlflow

    return mlflow


# MLflow's REST client retries 7 times with exponential backoff by default:
# minutes of silence before a CLI user learns the server is down. Fail fast
# unless the operator chose otherwise (MLflow reads these on every request).
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
# A model server polls every second and retries on its own; a retried or
# hanging call only delays noticing an outage (6.6 s vs 0.01 s on a dead port).
_SERVING_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_OPERATOR_SET = frozenset(key for key in _HTTP_DEFAULTS if key in os.environ)
for _key, _value in _HTTP_DEFAULTS.items():
    os.environ.setdefault(_key, _value)


def use_serving_http_defaults() -> None:
    """Switch MLflow's HTTP client to fail fast, except where the operator chose values."""
    for key, value in _SERVING_HTTP.items():
        if key not in _OPERATOR_SET:
            os.environ[key] = value


def _connection_failed(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause chain) is a failure to reach the server at all."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
        text = str(seen)
        if "Failed to establish a new connection" in text or "Connection refused" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def filter_literal(value: str) -> str | None:
    r"""``value`` as a string literal MLflow's filter parser reads back exactly, or None.

    MLflow strips the outer quotes and never unescapes (``_strip_quotes`` in
    MLflow 3.17 ``utils/search_utils.py``), so ``\'`` or ``''`` would reach the
    database as typed. A value is put in single quotes, else double quotes;
    each candidate is checked by parsing it with MLflow's own parser followed by
    another clause (a trailing backslash would swallow the closing quote). None
    means no literal can express the value (it holds both quote kinds).
    """
    if "'" not in value and "\\" not in value:
        return f"'{value}'"  # nothing to misread: no need to import MLflow's parser
    from mlflow.exceptions import MlflowException
    from mlflow.utils.search_utils import SearchModelVersionUtils

    for quote in ("'", '"'):
        if quote in value:
            continue
        literal = f"{quote}{value}{quote}"
        try:
            parsed = SearchModelVersionUtils.parse_search_filter(  # type: ignore[no-untyped-call]
                f"tags.k = {literal} and tags.k = 'end'"
            )
        except MlflowException:
            continue
        if len(parsed) == 2 and parsed[0].get("value") == value:
            return literal
    return None


PRODUCTION_ALIAS = "production"
STAGING_ALIAS = "staging"
_PAGE = 1000


@dataclass(frozen=True)
class VersionInfo:
    """What MLflow knows about one model version."""

    name: str
    version: int
    run_id: str
    source: str
    status: str
    native_stage: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    description: str
    created_ms: int
    user_id: str


@dataclass(frozen=True)
class ModelInfo:
    """What MLflow knows about one registered model."""

    name: str
    description: str
    aliases: dict[str, int]
    tags: dict[str, str]
    created_ms: int
    updated_ms: int


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


def _version(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id or "",
        source=mv.source or "",
        status=mv.status or "",
        native_stage=mv.current_stage or "None",
        aliases=tuple(mv.aliases or ()),
        tags=dict(mv.tags or {}),
        description=mv.description or "",
        created_ms=int(mv.creation_timestamp or 0),
        user_id=mv.user_id or "",
    )


class MlflowGateway:
    """Typed, error-translating access to one MLflow tracking/registry server."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None
        # Reads go over MLflow's REST API without importing mlflow; other stores
        # (sqlite:///, file:) only have the client.
        http = tracking_uri.split("://", 1)[0] in {"http", "https"}
        self._rest = MlflowRest(tracking_uri) if http else None

    @property
    def client(self) -> Any:
        """MLflow's ``MlflowClient`` (writes, artifacts, run search), created on first use."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def close(self) -> None:
        """Release the REST connection pool."""
        if self._rest is not None:
            self._rest.close()

    # -- error translation -------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, name: str | None = None, version: int | str | None = None) -> Iterator[None]:
        import requests
        from mlflow.exceptions import MlflowException, RestException

        try:
            with warnings.catch_warnings():
                # Native stages are deprecated upstream; we mirror them on purpose.
                warnings.simplefilter("ignore", FutureWarning)
                yield
        except RestException as exc:
            raise self._translate(exc, name, version) from exc
        except MlflowException as exc:
            if _connection_failed(exc):
                raise BackendUnavailableError(
                    "MLflow", self.tracking_uri, "connection failed"
                ) from exc
            if "too many 5" in str(exc) or "Max retries exceeded" in str(exc):
                # MLflow is up but failing: its database or artifact store is down.
                raise BackendError(
                    f"MLflow at {self.tracking_uri} answered with server errors; its backend "
                    "store or artifact store may be down"
                ) from exc
            raise self._translate(exc, name, version) from exc
        except requests.exceptions.HTTPError as exc:
            # The server answered, with an error (e.g. its artifact proxy refusing a file).
            status = exc.response.status_code if exc.response is not None else "error"
            raise BackendError(
                f"MLflow at {self.tracking_uri} answered HTTP {status}: {str(exc)[:200]}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise BackendUnavailableError("MLflow", self.tracking_uri, type(exc).__name__) from exc

    def _translate(self, exc: Any, name: str | None, version: int | str | None) -> Exception:
        code = exc.error_code
        if code == "RESOURCE_DOES_NOT_EXIST" and name is not None:
            if version is not None:
                return VersionNotFoundError(name, str(version))
            return ModelNotFoundError(name)
        if code in {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"}:
            return InvalidInputError(f"MLflow refused the request: {exc.message}")
        return BackendError(f"MLflow error {code}: {exc.message}")

    def _call(
        self,
        fn: Callable[[], T],
        name: str | None = None,
        version: int | str | None = None,
    ) -> T:
        with self._errors(name, version):
            return fn()

    # -- registered models and versions ------------------------------------

    def current_user(self, username: str, password: str) -> tuple[str, bool] | None:
        """``(user, is_admin)`` when MLflow's basic-auth app accepts the credentials, else None.

        ``users/current`` answers any authenticated user with its name and admin
        flag (MLflow 3.17 ``server/auth/__init__.py`` ``get_current_user``); wrong
        credentials get 401, and MLflow never reveals which half was wrong.
        """
        import requests

        url = self.tracking_uri.rstrip("/") + "/api/2.0/mlflow/users/current"
        try:
            response = requests.get(url, auth=(username, password), timeout=10)
        except requests.exceptions.RequestException as exc:
            raise BackendUnavailableError("MLflow", self.tracking_uri, type(exc).__name__) from exc
        if response.status_code == 404:
            raise BackendError(
                f"MLflow at {self.tracking_uri} does not run the basic-auth app; start it with "
                "`--app-name basic-auth` or set MODELREG_AUTH=none"
            )
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            # Fail closed: an auth database outage must never pass for a good password.
            raise BackendError(
                f"MLflow at {self.tracking_uri} could not check credentials "
                f"(HTTP {response.status_code}); try again later"
            )
        try:
            user = response.json()["user"]
            return str(user["username"]), bool(user.get("is_admin", False))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(
                f"MLflow at {self.tracking_uri} answered users/current without a user"
            ) from exc

    def may_write_model(self, name: str, username: str) -> bool:
        """Whether ``username`` can create versions of ``name`` in MLflow itself.

        Asks MLflow's basic-auth app as modelreg's service account (an admin):
        MLflow admins can write anything; others need EDIT or MANAGE on the
        registered model, resolved the way MLflow's own check resolves them
        (roles, defaults; MLflow 3.17 ``users/permissions/get``). When MLflow
        cannot say, the answer is yes: separation of duties fails closed.
        """
        rest = self._rest or MlflowRest(self.tracking_uri)
        try:
            user = rest.get("users/get", {"username": username}).get("user", {})
            if user.get("is_admin"):
                return True
            found = rest.get(
                "users/permissions/get",
                {"username": username, "resource_type": "registered_model", "resource_id": name},
                api="3.0",
            )
        except ModelregError:
            return True
        return str(found.get("permission", "")).upper() in {"EDIT", "MANAGE"}

    def ping(self) -> None:
        """Raise BackendUnavailableError unless the server answers."""
        self._models_page(None, limit=1)

    # Reads: over the REST API when the server speaks HTTP (no mlflow import), else
    # through the client. Both give objects with the attributes MLflow's entities have.

    def _models_page(self, token: str | None, limit: int = _PAGE) -> tuple[list[Any], str | None]:
        if self._rest is None:
            page = self._call(
                lambda: self.client.search_registered_models(max_results=limit, page_token=token)
            )
            return list(page), page.token or None
        body = self._rest.get(
            "registered-models/search", {"max_results": limit, "page_token": token}
        )
        found = [_model_entity(m) for m in body.get("registered_models", [])]
        return found, body.get("next_page_token") or None

    def _versions_page(
        self, text: str | None, token: str | None, name: str | None
    ) -> tuple[list[Any], str | None]:
        if self._rest is None:
            page = self._call(
                lambda: self.client.search_model_versions(
                    filter_string=text, max_results=_PAGE, page_token=token
                ),
                name,
            )
            return list(page), page.token or None
        body = self._rest.get(
            "model-versions/search",
            {"filter": text, "max_results": _PAGE, "page_token": token},
            name=name,
        )
        found = [_version_entity(v) for v in body.get("model_versions", [])]
        return found, body.get("next_page_token") or None

    def models(self) -> list[ModelInfo]:
        """Every registered model."""
        found: list[ModelInfo] = []
        token: str | None = None
        while True:
            page, token = self._models_page(token)
            found.extend(self._model(rm) for rm in page)
            if not token:
                return found

    def model(self, name: str) -> ModelInfo:
        """One registered model; ModelNotFoundError if absent."""
        if self._rest is None:
            return self._model(self._call(lambda: self.client.get_registered_model(name), name))
        body = self._rest.get("registered-models/get", {"name": name}, name=name)
        return self._model(_model_entity(body.get("registered_model", {})))

    @staticmethod
    def _model(rm: Any) -> ModelInfo:
        return ModelInfo(
            name=rm.name,
            description=rm.description or "",
            aliases={alias: int(v) for alias, v in (rm.aliases or {}).items()},
            tags=dict(rm.tags or {}),
            created_ms=int(rm.creation_timestamp or 0),
            updated_ms=int(rm.last_updated_timestamp or 0),
        )

    def versions(
        self, name: str | None = None, filter_string: str | None = None
    ) -> list[VersionInfo]:
        """Versions of ``name`` (or of every model), optionally narrowed by an MLflow filter.

        A name no MLflow literal can express is matched here instead of by MLflow.
        """
        literal = filter_literal(name) if name is not None else None
        clauses = [f"name = {literal}"] if literal is not None else []
        if filter_string:
            clauses.append(filter_string)
        text = " and ".join(clauses) or None
        found: list[VersionInfo] = []
        token: str | None = None
        while True:
            page, token = self._versions_page(text, token, name)
            found.extend(_version(mv) for mv in page if name is None or mv.name == name)
            if not token:
                break
        # search_model_versions leaves aliases out; take them from the models.
        aliases: dict[tuple[str, int], list[str]] = {}
        for model in [self.model(name)] if name is not None else self.models():
            for alias, number in model.aliases.items():
                aliases.setdefault((model.name, number), []).append(alias)
        return sorted(
            (
                replace(v, aliases=tuple(sorted(aliases.get((v.name, v.version), ()))))
                for v in found
            ),
            key=lambda v: (v.name, v.version),
        )

    def any_version_tagged(self, key: str) -> VersionInfo | None:
        """The most recently updated version (of any model) tagged ``key``, or None: one call."""
        text = f"tags.`{key}` LIKE '%'"
        order = ["last_updated_timestamp DESC"]
        if self._rest is None:
            page = self._call(
                lambda: self.client.search_model_versions(
                    filter_string=text, max_results=1, order_by=order
                )
            )
            return _version(page[0]) if page else None
        body = self._rest.get(
            "model-versions/search", {"filter": text, "max_results": 1, "order_by": order}
        )
        found = body.get("model_versions", [])
        return _version(_version_entity(found[0])) if found else None

    def version(self, name: str, version: int) -> VersionInfo:
        """One model version; VersionNotFoundError / ModelNotFoundError if absent."""
        try:
            if self._rest is None:
                mv = self._call(
                    lambda: self.client.get_model_version(name, str(version)), name, version
                )
            else:
                body = self._rest.get(
                    "model-versions/get",
                    {"name": name, "version": str(version)},
                    name=name,
                    version=version,
                )
                mv = _version_entity(body.get("model_version", {}))
        except VersionNotFoundError:
            # Only now ask which is missing: get_registered_model loads every
            # version server-side, which grows with the model's history.
            self.model(name)
            raise
        return _version(mv)

    def create_version(
        self, name: str, source: str, run_id: str | None
    ) -> tuple[VersionInfo, bool]:
        """Register a new version of ``name``; also whether the model was created for it.

        A model created here is deleted again when MLflow refuses the version, so a
        refused registration leaves nothing behind.
        """
        from mlflow.exceptions import MlflowException

        created = False
        with self._errors(name):
            try:
                self.client.create_registered_model(name)
                created = True
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            # MLflow 3 logged models (models:/m-<id>) must name their model_id.
            model_id = source[len("models:/") :] if source.startswith("models:/m-") else None
            try:
                mv = self.client.create_model_version(
                    name, source, run_id=run_id, model_id=model_id
                )
            except BaseException:
                if created:
                    with contextlib.suppress(MlflowException):
                        self.client.delete_registered_model(name)
                raise
        return _version(mv), created

    def delete_model(self, name: str) -> None:
        """Delete a registered model (undo of a registration that created it)."""
        self._call(lambda: self.client.delete_registered_model(name), name)

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version (used to undo a registration that failed half-way)."""
        self._call(lambda: self.client.delete_model_version(name, str(version)), name, version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        self._call(
            lambda: self.client.set_registered_model_alias(name, alias, str(version)), name, version
        )

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` if it exists."""
        from mlflow.exceptions import MlflowException

        with self._errors(name):
            try:
                self.client.delete_registered_model_alias(name, alias)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set several tags on a version."""
        with self._errors(name, version):
            for key, value in tags.items():
                self.client.set_model_version_tag(name, str(version), key, value)

    def set_description(self, name: str, version: int, description: str) -> None:
        """Set a version's description."""
        self._call(
            lambda: self.client.update_model_version(name, str(version), description=description),
            name,
            version,
        )

    def set_native_stage(self, name: str, version: int, stage: Stage) -> None:
        """Mirror ``stage`` into MLflow's deprecated stage field (never archives others)."""
        self._call(
            lambda: self.client.transition_model_version_stage(
                name, str(version), stage.value, archive_existing_versions=False
            ),
            name,
            version,
        )

    def _download_location(self, name: str, version: int) -> str:
        # mlflow 3.17's download_artifacts ignores registry_uri for models:/ URIs and
        # falls back to ./mlflow.db; resolve the version's location through our client.
        return str(
            self._call(
                lambda: self.client.get_model_version_download_uri(name, str(version)),
                name,
                version,
            )
        )

    def _download(self, name: str, version: int, uri: str, dst: Path) -> Path:
        """Download ``uri``; a store that has nothing there is named as the cause."""
        try:
            local = self._call(
                lambda: _mlflow().artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
                )
            )
        except (InvalidInputError, BackendError) as exc:
            if isinstance(exc, BackendUnavailableError):
                raise
            if "RESOURCE_DOES_NOT_EXIST" in exc.message or "No such file" in exc.message:
                raise ArtifactsNotFoundError(name, version, f"nothing at {uri}") from exc
            raise
        except OSError as exc:
            raise ArtifactsNotFoundError(name, version, f"{uri}: {exc}") from exc
        return Path(local)

    def download_version(self, name: str, version: int, dst: Path) -> Path:
        """Download the artifacts of a version into ``dst`` and return the model directory.

        Raises ArtifactsNotFoundError when the store has nothing where the version points.
        """
        dst.mkdir(parents=True, exist_ok=True)
        return self._download(name, version, self._download_location(name, version), dst)

    def download_version_files(
        self, name: str, version: int, paths: list[str], dst: Path
    ) -> dict[str, str]:
        """Download each of ``paths`` (relative to the model) on its own under ``dst``.

        Returns the paths the store refused to serve, with MLflow's reason. Used when
        the whole directory cannot be downloaded: MLflow's artifact proxy refuses a
        file replaced by a symlink, and one such file must read as tampering, not as
        an outage.
        """
        location = self._download_location(name, version).rstrip("/")
        refused: dict[str, str] = {}
        for relative in paths:
            target = dst / Path(relative).parent
            target.mkdir(parents=True, exist_ok=True)
            try:
                self._download(name, version, f"{location}/{relative}", target)
            except BackendUnavailableError:
                raise
            except ModelregError as exc:
                refused[relative] = exc.message
        return refused

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

    # -- runs ----------------------------------------------------------------

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

    def run_lineage(self, run_id: str) -> LineageRecord | None:
        """The ``lineage.json`` modelreg logged into a run, if there is one."""
        from modelreg.lineage import record_from_json

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self._call(
                    lambda: _mlflow().artifacts.download_artifacts(
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

    # -- logging into the active run (registration) --------------------------

    def log_lineage(
        self, record: LineageRecord, tags: Mapping[str, str], pip_freeze: str, datasets: list[Any]
    ) -> None:
        """Log lineage into the active run: JSON artifact, pip freeze, tags, params, datasets."""
        from modelreg.lineage import record_to_json

        with self._errors():
            run = _mlflow().active_run()
            if run is None:
                raise LineageError("no active MLflow run to log lineage into")
            _mlflow().log_text(record_to_json(record), "modelreg/lineage.json")
            _mlflow().log_text(pip_freeze, "modelreg/requirements-freeze.txt")
            _mlflow().set_tags(dict(tags))
            logged = self.client.get_run(run.info.run_id).data.params
            # MLflow refuses to overwrite a param with a different value.
            fresh = {k: v for k, v in record.params.items() if k not in logged}
            if fresh:
                _mlflow().log_params(fresh)
            for dataset in datasets:
                _mlflow().log_input(dataset, context="training")

    def pandas_dataset(self, frame: Any, name: str, digest: str) -> Any:
        """An MLflow dataset for a DataFrame, carrying modelreg's fingerprint as digest."""
        with self._errors():
            return _mlflow().data.from_pandas(frame, name=name, digest=digest[:36])

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
            info = _mlflow().sklearn.log_model(
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
        module = getattr(_mlflow(), flavor, None)
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
        active = _mlflow().active_run()
        if active is not None and run_id in (None, active.info.run_id):
            yield active.info.run_id
            return
        with self._errors():
            _mlflow().set_tracking_uri(self.tracking_uri)
            _mlflow().set_registry_uri(self.tracking_uri)
            if experiment:
                _mlflow().set_experiment(experiment)
            run = _mlflow().start_run(run_id=run_id)
        try:
            yield run.info.run_id
        except BaseException:
            _mlflow().end_run(status="FAILED")
            raise
        _mlflow().end_run()

    # -- serving support ---------------------------------------------------------

    def alias_version(self, name: str, alias: str) -> int:
        """The version ``alias`` points at, in one call (what model servers poll)."""
        try:
            if self._rest is None:
                mv = self._call(
                    lambda: self.client.get_model_version_by_alias(name, alias), name, f"@{alias}"
                )
            else:
                body = self._rest.get(
                    "registered-models/alias",
                    {"name": name, "alias": alias},
                    name=name,
                    version=f"@{alias}",
                )
                mv = _version_entity(body.get("model_version", {}))
        except (VersionNotFoundError, InvalidInputError) as exc:
            # MLflow 3.17 answers an unset alias with INVALID_PARAMETER_VALUE.
            self.model(name)  # ModelNotFoundError when the model itself is missing
            raise VersionNotFoundError(name, f"@{alias}") from exc
        return int(mv.version)


def _pairs(items: Any) -> dict[str, Any]:
    """``[{"key": k, "value": v}, ...]`` from MLflow's REST JSON as a dict."""
    return {str(i.get("key")): i.get("value") for i in items or [] if isinstance(i, dict)}


def _model_entity(body: Mapping[str, Any]) -> SimpleNamespace:
    """A registered model from REST JSON, shaped like MLflow's ``RegisteredModel``."""
    return SimpleNamespace(
        name=body.get("name", ""),
        description=body.get("description", ""),
        aliases={str(a.get("alias")): a.get("version") for a in body.get("aliases") or []},
        tags=_pairs(body.get("tags")),
        creation_timestamp=body.get("creation_timestamp", 0),
        last_updated_timestamp=body.get("last_updated_timestamp", 0),
    )


def _version_entity(body: Mapping[str, Any]) -> SimpleNamespace:
    """A model version from REST JSON, shaped like MLflow's ``ModelVersion``."""
    return SimpleNamespace(
        name=body.get("name", ""),
        version=body.get("version", 0),
        run_id=body.get("run_id", ""),
        source=body.get("source", ""),
        status=body.get("status", ""),
        current_stage=body.get("current_stage", "None"),
        aliases=list(body.get("aliases") or []),
        tags=_pairs(body.get("tags")),
        description=body.get("description", ""),
        creation_timestamp=body.get("creation_timestamp", 0),
        user_id=body.get("user_id", ""),
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
            params=_pairs(data.get("params")),
            metrics={k: float(v) for k, v in _pairs(data.get("metrics")).items()},
            tags=_pairs(data.get("tags")),
        ),
        inputs=SimpleNamespace(dataset_inputs=inputs),
    )


def infer_signature(inputs: Any, outputs: Any) -> Any:
    """MLflow's signature inference, re-exported so callers need not import mlflow."""
    from mlflow.models import infer_signature as _infer

    return _infer(inputs, outputs)


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    """Flavors and signature of a downloaded model as plain data.

    Raises InvalidInputError when the MLmodel file is not one MLflow can read
    (anyone who may create a version can upload any file).
    """
    from mlflow.models import Model

    path = model_dir / "MLmodel"
    if not path.is_file():
        return {}
    try:
        model = Model.load(str(path))
    except Exception as exc:  # YAML, schema and type errors all mean "not a model file"
        raise InvalidInputError(
            f"its MLmodel file is not valid ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    inputs = None
    if model.signature is not None and model.signature.inputs is not None:
        inputs = json.loads(model.signature.inputs.to_json())
    return {"flavors": dict(model.flavors), "inputs": inputs}


def temporary_dir(base: Path) -> tempfile.TemporaryDirectory[str]:
    """A private temporary directory under ``base`` for artifact downloads."""
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    return tempfile.TemporaryDirectory(dir=base)
