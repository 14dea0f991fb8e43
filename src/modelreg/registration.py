"""Registering models with complete lineage, and the facts semver bumps are computed from."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg import lineage as capture
from modelreg.domain import DataFingerprint, EnvironmentInfo, GitInfo, LineageRecord
from modelreg.errors import InvalidInputError
from modelreg.mlflow_gateway import RunInfo, infer_signature
from modelreg.semver import InputColumn, VersionFacts

if TYPE_CHECKING:
    from modelreg.registry import Registry
    from modelreg.views import VersionView

_GIT_TAGS = ("mlflow.source.git.commit", "mlflow.source.git.branch", "mlflow.source.git.repoURL")
# What training code commonly logs itself (the course: data_version, git_commit, git_branch).
_DECLARED_COMMIT = ("git_commit", "git_sha", "commit")
_DECLARED_BRANCH = ("git_branch", "branch")
_DECLARED_DATA = ("data_version", "dataset_version", "data_tag")
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")  # "unknown" or "" is no commit


def _inputs(mlmodel: Mapping[str, Any]) -> tuple[InputColumn, ...] | None:
    spec = mlmodel.get("inputs")
    if spec is None:
        return None
    columns = []
    for index, column in enumerate(spec):
        kind = column.get("type", "")
        if kind == "tensor":
            kind = f"tensor{column.get('tensor-spec', {})}"
        columns.append(
            InputColumn(
                name=str(column.get("name", index)),
                type=str(kind),
                required=bool(column.get("required", True)),
            )
        )
    return tuple(columns)


def _flavor(mlmodel: Mapping[str, Any]) -> str:
    flavors = [f for f in mlmodel.get("flavors", {}) if f != "python_function"]
    return flavors[0] if flavors else ("python_function" if mlmodel.get("flavors") else "")


def facts_from(
    mlmodel: Mapping[str, Any], run: RunInfo | None, record: LineageRecord, model_class: str
) -> VersionFacts:
    """The facts a semver bump compares: signature, flavor, class, params, data."""
    params: Mapping[str, object] = record.params or (run.params if run else {})
    first = record.data[0] if record.data else None
    # A declared label stands in for content: a new data_version is a PATCH bump too.
    data = (first.sha256 or f"declared:{first.version or ''}") if first else ""
    return VersionFacts.build(_inputs(mlmodel), _flavor(mlmodel), model_class, params, data)


def facts_to_json(facts: VersionFacts) -> dict[str, Any]:
    """Facts as JSON-ready data for the ledger."""
    return {
        "inputs": None
        if facts.inputs is None
        else [[c.name, c.type, c.required] for c in facts.inputs],
        "flavor": facts.flavor,
        "model_class": facts.model_class,
        "params": [list(pair) for pair in facts.params],
        "data_fingerprint": facts.data_fingerprint,
    }


def facts_from_json(data: Mapping[str, Any]) -> VersionFacts:
    """Facts back from the ledger."""
    inputs = data.get("inputs")
    return VersionFacts(
        inputs=None
        if inputs is None
        else tuple(InputColumn(str(n), str(t), bool(r)) for n, t, r in inputs),
        flavor=str(data.get("flavor", "")),
        model_class=str(data.get("model_class", "")),
        params=tuple((str(k), str(v)) for k, v in data.get("params", [])),
        data_fingerprint=str(data.get("data_fingerprint", "")),
    )


def _first(values: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    return next((values[k].strip() for k in keys if values.get(k, "").strip()), None)


def declared_git(run: RunInfo) -> GitInfo | None:
    """Git lineage MLflow recorded (``mlflow.source.git.*``) or the run declared itself.

    MLflow's own tags win over ``git_commit``/``git_branch`` params or tags.
    """
    commit, branch, remote = (run.tags.get(tag) for tag in _GIT_TAGS)
    if commit:
        return GitInfo(commit=commit, branch=branch, remote=remote, source="mlflow", dirty=None)
    labels = {**run.params, **run.tags}
    commit = _first(labels, _DECLARED_COMMIT)
    if commit is None or not _COMMIT.match(commit):
        return None
    return GitInfo(
        commit=commit, branch=_first(labels, _DECLARED_BRANCH), source="declared", dirty=None
    )


def declared_data(run: RunInfo) -> list[DataFingerprint]:
    """Training data the run declared: logged MLflow datasets, else a data version label."""
    data = [
        DataFingerprint(name=name, kind="mlflow-dataset", sha256=digest)
        for name, digest in run.dataset_digests
    ]
    label = _first({**run.params, **run.tags}, _DECLARED_DATA)
    if label is not None:
        if data:
            data = [d.model_copy(update={"version": d.version or label}) for d in data]
        else:
            data = [DataFingerprint(name="training", kind="declared", version=label)]
    return data


def adopted_lineage(run: RunInfo | None, mlmodel: Mapping[str, Any] | None) -> LineageRecord:
    """Rebuild as much lineage as MLflow recorded for a version registered without modelreg.

    Declared lineage counts (git params, ``mlflow.source.git.*`` tags, a data
    version label, logged datasets); the record says which parts were only
    declared (:attr:`GitInfo.source`, data ``kind``).
    """
    if run is None:
        return LineageRecord()
    environment = None
    flavors = (mlmodel or {}).get("flavors", {})
    python = flavors.get("python_function", {}).get("python_version")
    if python:
        packages = {
            f"{flavor}": str(conf.get(f"{flavor}_version"))
            for flavor, conf in flavors.items()
            if isinstance(conf, dict) and conf.get(f"{flavor}_version")
        }
        environment = EnvironmentInfo(
            python=str(python), platform="unknown", cpu="unknown", cpu_count=0, packages=packages
        )
    return LineageRecord(
        run_id=run.run_id,
        git=declared_git(run),
        data=declared_data(run),
        params=dict(run.params),
        environment=environment,
    )


def trusted_types(model: Any) -> list[str]:
    """The types skops must trust to load ``model`` back.

    MLflow 3.17 saves sklearn models with skops and refuses to log one whose
    types are not trusted (every tree model). We just serialised this very
    object ourselves, so its types are the ones to trust.
    """
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


_SKLEARN_STACK = ("scikit-learn", "skops", "numpy", "scipy")
_SKLEARN_MODULES = frozenset({"sklearn", "numpy", "scipy", "builtins"})


def known_requirements(untrusted: list[str]) -> list[str] | None:
    """Pinned requirements of a model built only from sklearn, numpy and scipy types.

    MLflow otherwise infers them by loading the model in a subprocess, which
    was 4.4 s of a 5.9 s registration here. A model with any other type in it
    (a custom transformer, a function from user code) returns None: MLflow's
    inference then finds what that code needs.
    """
    if any(t.split(".")[0] not in _SKLEARN_MODULES for t in untrusted):
        return None
    return [f"{dist}=={importlib.metadata.version(dist)}" for dist in _SKLEARN_STACK]


def _is_sklearn(model: Any) -> bool:
    return type(model).__module__.split(".")[0] == "sklearn"


def register(
    registry: Registry,
    model: Any,
    *,
    name: str,
    training_data: Any = None,
    input_example: Any = None,
    signature: Any = None,
    params: Mapping[str, object] | None = None,
    data_version: str | None = None,
    semver: str | None = None,
    description: str = "",
    flavor: str | None = None,
    code_path: str | Path = ".",
    experiment: str | None = None,
    run_id: str | None = None,
    actor: str | None = None,
) -> VersionView:
    """Log ``model`` with its signature and complete lineage, and register a new version.

    Works inside an active MLflow run (or resumes ``run_id``, or starts one).
    The signature is required: pass one, or an ``input_example``/``training_data``
    to infer it from.
    """
    served: dict[Any, str] = {}
    if signature is None:
        example = input_example if input_example is not None else training_data
        if example is None:
            raise InvalidInputError(
                "a model signature is required: pass signature=, input_example= or training_data="
            )
        signature, served = infer_serving_signature(model, example)
    if input_example is None and training_data is not None and hasattr(training_data, "head"):
        input_example = training_data.head(5)
    # The example must match the inferred signature: the server warms up on it.
    input_example = served_example(input_example, served)
    hyper = dict(params) if params is not None else _params_of(model)
    gateway = registry.gateway
    with gateway.run_context(run_id, experiment) as active_run:
        data: list[DataFingerprint] = []
        datasets = []
        if training_data is not None:
            fp = capture.fingerprint(training_data, name="training", version=data_version)
            data.append(fp)
            if hasattr(training_data, "columns"):
                datasets.append(gateway.pandas_dataset(training_data, "training", fp.sha256 or ""))
        data += capture.dvc_entries(code_path)
        record = capture.build_record(
            run_id=active_run,
            params=hyper,
            data=data,
            git=capture.capture_git(code_path),
            environment=capture.capture_environment(),
        )
        tags = capture.lineage_tags(record)
        if data_version:
            tags["data_version"] = data_version
        gateway.log_lineage(record, tags, capture.pip_freeze(), datasets)
        if flavor is None and _is_sklearn(model):
            trusted = trusted_types(model)
            uri = gateway.log_sklearn(
                model, signature, input_example, trusted, known_requirements(trusted)
            )
        else:
            uri = gateway.log_pyfunc_flavor(flavor or "sklearn", model, signature, input_example)
        model_class = f"{type(model).__module__}.{type(model).__qualname__}"
        return registry.register_version(
            name,
            uri,
            active_run,
            lineage=record,
            model_class=model_class,
            explicit_semver=semver,
            description=description,
            actor=actor,
        )


_SIGNATURE_ROWS = 50


def _signature_sample(example: Any) -> Any:
    """The rows a signature is inferred from: the first ones, plus a gap of every column.

    MLflow marks a column optional only when its sample has a missing value;
    without the first row holding each column's gap, a column whose gaps lie
    past the first rows would be declared required and its nulls refused.
    """
    if not hasattr(example, "columns"):
        return (
            example.head(_SIGNATURE_ROWS) if hasattr(example, "head") else example[:_SIGNATURE_ROWS]
        )
    missing = example.isna().to_numpy()
    gaps = {int(column.argmax()) for column in missing.T if column.any()}
    rows = sorted(set(range(min(_SIGNATURE_ROWS, len(example)))) | gaps)
    return example.iloc[rows]


def _nullable_columns(sample: Any) -> dict[Any, str]:
    """Columns of a pandas nullable dtype with missing values, and the dtype serving gives them.

    MLflow infers such a column as an optional ``long``/``integer`` or
    ``boolean``. Served, a missing integer can only reach the model as a float
    NaN (MLflow's enforcement casts integer columns to int64, which has no
    missing value), so the column is declared ``double``, as MLflow's
    documentation advises; a missing boolean reaches the model as None in an
    object column. The signature is inferred, and the model tried, on those forms.
    """
    if not hasattr(sample, "columns"):
        return {}
    import pandas as pd

    served: dict[Any, str] = {}
    for name, values in sample.items():
        dtype = values.dtype
        if isinstance(dtype, pd.api.extensions.ExtensionDtype) and values.hasnans:
            if dtype.kind == "b":
                served[name] = "object"
            elif dtype.kind in "iuf":
                served[name] = "float64"
    return served


def served_example(frame: Any, served: Mapping[Any, str]) -> Any:
    """``frame`` with the ``served`` columns in the form the model server passes them."""
    if not served or not hasattr(frame, "columns"):
        return frame
    frame = frame.copy()
    for name, dtype in served.items():
        if name in frame.columns:
            values = frame[name]
            converted = values.astype(dtype)
            frame[name] = converted.where(values.notna(), None) if dtype == "object" else converted
    return frame


def infer_serving_signature(model: Any, example: Any) -> tuple[Any, dict[Any, str]]:
    """Infer ``model``'s signature from ``example`` in the form the model server passes data.

    Returns the signature and the columns whose missing values are served in
    another dtype (name to dtype; give them to :func:`served_example`). A
    model that cannot score those rows is refused with InvalidInputError:
    once served, it would refuse every row with a missing value.
    """
    sample = _signature_sample(example)
    served = _nullable_columns(sample)
    sample = served_example(sample, served)
    try:
        outputs = model.predict(sample)
    except Exception as exc:
        if not served:
            raise
        forms = ", ".join(
            f"{name!r} as {'floats with NaN' if dtype == 'float64' else 'objects with None'}"
            for name, dtype in served.items()
        )
        raise InvalidInputError(
            "the model cannot score its own training rows in the form the model server "
            f"passes missing values ({forms}): {type(exc).__name__}: {str(exc)[:300]}; "
            "fill or convert these columns before training, or pass signature= and "
            "input_example= yourself"
        ) from exc
    return infer_signature(sample, outputs), served


def _params_of(model: Any) -> dict[str, object]:
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return {}
    return {
        k: v
        for k, v in get_params(deep=False).items()
        if isinstance(v, str | int | float | bool) or v is None
    }
