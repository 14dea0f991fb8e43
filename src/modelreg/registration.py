"""What registering a model needs: signatures, lineage rebuilt from runs, semver facts.

Pure helpers over MLflow's values (runs, MLmodel files) and the model object;
the registration itself (log, register, record) is
:meth:`modelreg.registry.adoption.Adoption.register`.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping
from typing import Any

from modelreg.domain import DataFingerprint, DataKind, EnvironmentInfo, GitInfo, LineageRecord
from modelreg.errors import InvalidInputError
from modelreg.mlflow_gateway import RunInfo, infer_signature
from modelreg.semver import VersionFacts, input_columns

_GIT_TAGS = ("mlflow.source.git.commit", "mlflow.source.git.branch", "mlflow.source.git.repoURL")
# What training code commonly logs itself (the course: data_version, git_commit, git_branch).
_DECLARED_COMMIT = ("git_commit", "git_sha", "commit")
_DECLARED_BRANCH = ("git_branch", "branch")
_DECLARED_DATA = ("data_version", "dataset_version", "data_tag")
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")  # "unknown" or "" is no commit


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
    spec = mlmodel.get("inputs")  # None: the model logged no signature
    inputs = None if spec is None else input_columns(spec)
    return VersionFacts.build(inputs, _flavor(mlmodel), model_class, params, data)


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
        DataFingerprint(name=name, kind=DataKind.MLFLOW_DATASET, sha256=digest)
        for name, digest in run.dataset_digests
    ]
    label = _first({**run.params, **run.tags}, _DECLARED_DATA)
    if label is not None:
        if data:
            data = [d.model_copy(update={"version": d.version or label}) for d in data]
        else:
            data = [DataFingerprint(name="training", kind=DataKind.DECLARED, version=label)]
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


def is_sklearn(model: Any) -> bool:
    """Whether ``model`` is a scikit-learn estimator (logged with skops, requirements pinned)."""
    return type(model).__module__.split(".")[0] == "sklearn"


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


def params_of(model: Any) -> dict[str, object]:
    """The hyperparameters ``get_params`` reports that MLflow can log (plain values only)."""
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return {}
    return {
        k: v
        for k, v in get_params(deep=False).items()
        if isinstance(v, str | int | float | bool) or v is None
    }
