"""Fetch, verify and load model versions for serving, through a content-addressed cache.

A version is downloaded into ``<cache>/<digest hex>/`` and its files are
checked against the sha256 manifest the ledger recorded at registration
*before* MLflow deserialises anything: unpickling or loading a tampered
artifact can run arbitrary code, so hashing has to come first. A cached copy
is re-verified on every use and downloaded again when it no longer matches.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelreg.errors import IntegrityError, PayloadError
from modelreg.integrity import Manifest, verify
from modelreg.serving.protocol import InputSchema
from modelreg.serving.source import ModelSource

log = logging.getLogger("modelreg.serving")

# MLflow's schema enforcement reports a request the model cannot take with these codes.
_BAD_INPUT_CODES = frozenset({"BAD_REQUEST", "INVALID_PARAMETER_VALUE"})
_ZEROS: dict[str, Any] = {"string": "", "binary": b"", "boolean": False}


@dataclass(frozen=True)
class LoadedModel:
    """A verified, deserialised model version, ready to predict."""

    name: str
    version: int
    semver: str
    digest: str
    path: Path
    pyfunc: Any
    schema: InputSchema | None
    loaded_at: datetime

    def predict(self, frame: pd.DataFrame | np.ndarray, params: dict[str, Any] | None) -> Any:
        """Score ``frame``; input the model rejects raises PayloadError instead of a crash.

        ``frame`` is a DataFrame, or a 2-D array whose columns are the schema's
        columns in signature order (what the parser builds for an all-float
        schema, without a DataFrame per request).
        """
        from mlflow.exceptions import MlflowException

        if isinstance(frame, np.ndarray):
            if self.schema is None:
                raise PayloadError("the model has no named-column schema to read an array by")
            frame = pd.DataFrame(frame, columns=self.schema.index, copy=False)
        try:
            return self.pyfunc.predict(frame, params=params)
        except MlflowException as exc:
            if exc.error_code in _BAD_INPUT_CODES:
                raise PayloadError(f"the model cannot score this input: {exc.message}") from exc
            raise
        except (ValueError, TypeError) as exc:
            # Model libraries validate input by raising these (e.g. scikit-learn on NaN).
            raise PayloadError(f"the model cannot score this input: {str(exc)[:500]}") from exc

    def warm_up(self) -> None:
        """Predict once, so the first real request does not pay for lazy initialisation.

        The model's own input example must score, or the version is broken and
        refused. A zero row synthesised from the schema may lie outside what
        the model accepts, so its failure is only logged.
        """
        example = self._input_example()
        if example is not None:
            self.predict(example, None)
            return
        row = zero_row(self.pyfunc.metadata.get_input_schema())
        if row is None:
            return
        try:
            self.predict(row, None)
        except PayloadError as exc:
            log.warning("%s v%d: warm-up on a zero row failed: %s", self.name, self.version, exc)

    def _input_example(self) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.pyfunc.metadata.load_input_example(str(self.path))
        except (MlflowException, OSError, ValueError) as exc:
            log.warning("%s v%d: input example unreadable: %s", self.name, self.version, exc)
            return None


def zero_row(schema: Any) -> pd.DataFrame | None:
    """One all-zero row matching a column-based MLflow schema (None for other schemas)."""
    if schema is None or schema.is_tensor_spec():
        return None
    row: dict[Any, Any] = {}
    dtypes: dict[Any, Any] = {}
    for position, spec in enumerate(schema.inputs):
        kind = getattr(spec.type, "name", None)
        if not isinstance(kind, str):  # arrays, objects, maps: no generic zero
            return None
        key = spec.name if spec.name is not None else position
        if kind == "datetime":
            row[key] = pd.Timestamp(0)
        else:
            row[key] = _ZEROS.get(kind, 0)
            dtypes[key] = spec.type.to_pandas()
    return pd.DataFrame([row]).astype(dtypes)


class ModelLoader:
    """Turns (model, version) into a :class:`LoadedModel` through a model source and the cache."""

    def __init__(self, source: ModelSource, cache_dir: Path) -> None:
        self.source = source
        self.cache_dir = cache_dir.expanduser().resolve()

    def load(self, name: str, version: int) -> LoadedModel:
        """Fetch, verify and deserialise a version (blocking: call it from a worker thread).

        Raises IntegrityError when the artifacts differ from the ledger's
        manifest, ModelNotReadyError when the ledger has no manifest for the
        version, NotFoundError and BackendError from the source.
        """
        import mlflow.pyfunc

        record = self.source.serving_record(name, version)
        manifest = record.manifest
        path = self.fetch(name, version, manifest)
        pyfunc = mlflow.pyfunc.load_model(str(path))
        return LoadedModel(
            name=name,
            version=version,
            semver=record.semver,
            digest=manifest.digest,
            path=path,
            pyfunc=pyfunc,
            schema=InputSchema.from_mlflow(pyfunc.metadata.get_input_schema()),
            loaded_at=datetime.now(UTC),
        )

    def fetch(self, name: str, version: int, manifest: Manifest) -> Path:
        """The verified local copy of a version: from the cache, or downloaded into it."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.cache_dir, 0o700)
        entry = self.cache_dir / manifest.digest.removeprefix("sha256:")
        if entry.is_dir():
            if not verify(entry, manifest):
                return entry
            log.warning("cached copy %s no longer matches its manifest; downloading again", entry)
            shutil.rmtree(entry)
        # Download beside the entry so the final rename is atomic: a concurrent
        # reader sees either no entry or a complete, verified one.
        with tempfile.TemporaryDirectory(
            dir=self.cache_dir, prefix=".download-", ignore_cleanup_errors=True
        ) as tmp:
            model_dir = self.source.download(name, version, Path(tmp))
            problems = verify(model_dir, manifest)
            if problems:
                raise IntegrityError(name, version, problems)
            os.chmod(model_dir, 0o700)
            try:
                model_dir.rename(entry)
            except OSError:
                if not entry.is_dir():  # else another loader stored the same content first
                    raise
        return entry
