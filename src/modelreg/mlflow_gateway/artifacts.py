"""Artifacts: downloading a version's files, and reading their MLmodel file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelreg.errors import (
    ArtifactsNotFoundError,
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    ModelregError,
    NotFoundError,
)
from modelreg.mlflow_gateway.connection import Connection


class ArtifactCalls(Connection):
    """Downloads of version artifacts (a part of :class:`MlflowGateway`)."""

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
        return self._download_uri(uri, dst, lambda why: ArtifactsNotFoundError(name, version, why))

    def _download_uri(self, uri: str, dst: Path, missing: Callable[[str], ModelregError]) -> Path:
        """Download ``uri`` into ``dst``; ``missing(why)`` is raised when the store has nothing."""
        try:
            local = self._call(
                lambda: self._mlflow().artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
                )
            )
        except (InvalidInputError, BackendError) as exc:
            if isinstance(exc, BackendUnavailableError):
                raise
            if "RESOURCE_DOES_NOT_EXIST" in exc.message or "No such file" in exc.message:
                raise missing(f"nothing at {uri}") from exc
            raise
        except OSError as exc:
            raise missing(f"{uri}: {exc}") from exc
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

    def store_derived(self, run_id: str, folder: str, filename: str, data: bytes) -> str:
        """Log ``data`` as ``<folder>/<filename>`` among the run's artifacts; its ``runs:/`` URI.

        For artifacts derived from a version (its compiled form): kept beside
        the run that produced the version, outside the model directory, so
        the version's own files and manifest are untouched.
        """
        with tempfile.TemporaryDirectory(prefix="modelreg-derived-") as tmp:
            local = Path(tmp) / filename
            local.write_bytes(data)
            self._call(lambda: self.client.log_artifact(run_id, str(local), artifact_path=folder))
        return f"runs:/{run_id}/{folder}/{filename}"

    def fetch_derived(self, uri: str) -> bytes:
        """The bytes of one artifact logged by :meth:`store_derived`.

        Raises NotFoundError when the store has nothing at ``uri``, BackendError
        when it cannot be reached.
        """
        with tempfile.TemporaryDirectory(prefix="modelreg-derived-") as tmp:
            local = self._download_uri(
                uri, Path(tmp), lambda why: NotFoundError(f"no derived artifact: {why}")
            )
            return local.read_bytes()


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
