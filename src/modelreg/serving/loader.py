"""Fetch, verify and load model versions for serving, through a content-addressed cache.

A version is downloaded into ``<cache>/<digest hex>/`` and its files are
checked against the sha256 manifest the ledger recorded at registration
*before* MLflow deserialises anything: unpickling or loading a tampered
artifact can run arbitrary code, so hashing has to come first. A cached copy
is re-verified on every use and downloaded again when it no longer matches.

Once loaded and warmed up, a version is compiled (:meth:`ModelLoader.compile`):
its native model is converted to ONNX (:mod:`modelreg.serving.compiled`),
stored beside the cached copy as ``<cache>/<digest hex>.onnx`` and run by
ONNX Runtime, but only after the compiled and the original model scored the
same verification rows alike (identical predictions, probabilities or
values within the policy's tolerance). The verification is recorded in the
ledger (a COMPILE event with the compiled artifact's sha256), and a stored
compiled artifact whose sha256 differs from the recorded one is refused.
Anything unsupported, disagreeing or failing is served by the MLflow pyfunc,
with the reason logged and shown in ``/version``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelreg.domain import CompileDetails, CompileMode, ServingRecord
from modelreg.errors import (
    CompilationError,
    IntegrityError,
    ModelregError,
    PayloadError,
    shorten,
)
from modelreg.integrity import Manifest, verify
from modelreg.serving.cache import mark_used, prune_cache
from modelreg.serving.config import DEFAULT_CACHE_MAX_BYTES
from modelreg.serving.protocol import InputSchema
from modelreg.serving.source import CompilationSink, ModelSource

if TYPE_CHECKING:
    from modelreg.serving.compiled import CompiledModel

log = logging.getLogger("modelreg.serving")

# MLflow's schema enforcement reports a request the model cannot take with these codes.
_BAD_INPUT_CODES = frozenset({"BAD_REQUEST", "INVALID_PARAMETER_VALUE"})
_ZEROS: dict[str, Any] = {"string": "", "binary": b"", "boolean": False}


PYFUNC = "pyfunc"
ONNXRUNTIME = "onnxruntime"


@dataclass(frozen=True)
class Runtime:
    """What answers a loaded version's predictions, and why.

    ``name`` is ``onnxruntime`` (a verified compiled form) or ``pyfunc`` (the
    MLflow pyfunc); ``reason`` says why the pyfunc serves (compilation off,
    unsupported, refused); ``details`` are the verification of the compiled
    form (also of a refused one), as recorded in the ledger.
    """

    name: str = PYFUNC
    reason: str = "not compiled yet"
    details: CompileDetails | None = None
    off: bool = False  # compilation was turned off (server or policy), not attempted

    @property
    def outcome(self) -> str:
        """``compiled``, ``off`` or ``fallback`` (the pyfunc serves although compiling was on)."""
        if self.name == ONNXRUNTIME:
            return "compiled"
        return "off" if self.off else "fallback"

    def as_json(self) -> dict[str, Any]:
        """The runtime as ``/version`` shows it."""
        shown: dict[str, Any] = {"name": self.name}
        if self.reason:
            shown["reason"] = self.reason
        if self.details is not None:
            shown["verification"] = self.details.model_dump(
                mode="json", exclude={"comment", "triggered_by"}
            )
        return shown


@dataclass(frozen=True)
class LoadedModel:
    """A verified, deserialised model version, ready to predict.

    ``compiled`` is its verified compiled form, None while the pyfunc serves
    (``runtime`` says why).
    """

    name: str
    version: int
    semver: str
    digest: str
    path: Path
    pyfunc: Any
    schema: InputSchema | None
    loaded_at: datetime
    record: ServingRecord | None = None
    compiled: CompiledModel | None = None
    runtime: Runtime = Runtime()

    def predict(self, frame: pd.DataFrame | np.ndarray, params: dict[str, Any] | None) -> Any:
        """Score ``frame``; input the model rejects raises PayloadError instead of a crash.

        ``frame`` is a DataFrame, or a 2-D array whose columns are the schema's
        columns in signature order (what the parser builds for an all-float
        schema, without a DataFrame per request).
        """
        from mlflow.exceptions import MlflowException

        compiled = self.compiled
        if compiled is not None and not params:
            values = frame if isinstance(frame, np.ndarray) else frame.to_numpy(np.float64)
            # Missing or infinite values, and no rows at all, go to the original, whose
            # library decides (scikit-learn refuses them with a 400, or its trees route
            # NaN): the compiled form was never verified on them.
            if len(values) and np.isfinite(values).all():
                try:
                    return compiled.predict(values)
                except ValueError:
                    # Finite here, but not in the compiled model's input type (1e39 is
                    # past float32): the original refuses or scores it, as before.
                    pass
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

    def __init__(
        self,
        source: ModelSource,
        cache_dir: Path,
        *,
        replica: str = "",
        max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
    ) -> None:
        self.source = source
        self.cache_dir = cache_dir.expanduser().resolve()
        self.replica = replica
        self.max_bytes = max_bytes
        # What this process serves (digests), so pruning keeps it; the server sets it.
        self.in_use: Callable[[], Collection[str]] = frozenset

    def prune(self) -> list[Path]:
        """Remove least recently used versions past ``max_bytes``, keeping what is served.

        Blocking (walks the cache): call it from a worker thread after a load.
        """
        keep = {digest.removeprefix("sha256:") for digest in self.in_use()}
        return prune_cache(self.cache_dir, max_bytes=self.max_bytes, keep=keep)

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
            record=record,
        )

    def compile(self, loaded: LoadedModel, mode: CompileMode = "auto") -> LoadedModel:
        """``loaded`` with its runtime chosen: a verified compiled form, or the pyfunc.

        ``mode`` is the server's setting; ``auto`` defers to the policy's
        (``ServingRecord.compile``). Blocking (conversion takes about a second
        for a 200-tree forest): call it from a worker thread. Raises
        CompilationError only when compilation is required and no verified
        compiled form could be made; otherwise a failure leaves the pyfunc
        serving, with the reason in ``runtime`` and the log.
        """
        record = loaded.record
        wanted = mode if mode != "auto" or record is None else record.compile
        if wanted == "off":
            off = "compilation is off" + (" (server)" if mode == "off" else " (policy)")
            return replace(loaded, runtime=Runtime(PYFUNC, off, off=True))
        try:
            try:
                compiled, details = self._compiled_form(loaded)
            except CompilationError:
                raise
            except Exception as exc:  # a converter's bug must not stop serving
                log.exception("%s v%d: compiling failed", loaded.name, loaded.version)
                raise CompilationError(f"compiling failed: {shorten(str(exc), 300)}") from exc
        except CompilationError as exc:
            if wanted == "require":
                raise CompilationError(
                    f"compilation is required, but v{loaded.version} has no verified "
                    f"compiled form: {exc.reason}"
                ) from exc
            log.warning(
                "%s v%d: serving the MLflow pyfunc: %s", loaded.name, loaded.version, exc.reason
            )
            refused = exc.details if isinstance(exc, _RefusedError) else None
            return replace(loaded, runtime=Runtime(PYFUNC, exc.reason, refused))
        log.info(
            "%s v%d: serving the compiled form (%s), verified on %d rows, max difference %.2g",
            loaded.name,
            loaded.version,
            details.compiled_digest[:19],
            details.rows,
            details.max_abs_diff or 0.0,
        )
        return replace(loaded, compiled=compiled, runtime=Runtime(ONNXRUNTIME, "", details))

    def _compiled_form(self, loaded: LoadedModel) -> tuple[CompiledModel, CompileDetails]:
        """A compiled form of ``loaded`` that passed verification now; CompilationError if none.

        A form the ledger recorded is taken from this server's cache, else
        from beside the version in the artifact store, if its sha256 is the
        recorded one (a different one is refused: tampered); otherwise the
        model is converted. Either way it is verified again before it serves.
        """
        from modelreg.serving import compiled as onnx

        record = loaded.record
        if record is None or loaded.schema is None:
            raise CompilationError("the model has no named-column signature to compile against")
        stored = self.cache_dir / f"{loaded.digest.removeprefix('sha256:')}.onnx"
        known = record.compiled
        data = self._recorded_form(loaded, stored, known) if known is not None else b""
        if known is not None and data:
            form = onnx.CompiledModel(data, kind=known.kind, predict_fn=known.predict_fn)
            converters, model_type = known.converters, known.model_type
            kind, predict_fn = known.kind, known.predict_fn
        else:
            converted = onnx.compile_pyfunc(loaded.pyfunc, loaded.schema.names)
            form = onnx.CompiledModel.from_converted(converted)
            data = converted.onnx
            converters, model_type = converted.converters, converted.model_type
            kind, predict_fn = converted.kind, converted.predict_fn
        rows = onnx.verification_rows(loaded.pyfunc, loaded.path)
        check = onnx.verify(loaded.pyfunc, form, rows, tolerance=record.compile_tolerance)
        details = CompileDetails(
            compiled_digest=onnx.onnx_digest(data),
            kind=kind,
            predict_fn=predict_fn,
            passed=check.passed,
            rows=check.rows,
            max_abs_diff=check.max_abs_diff,
            tolerance=check.tolerance,
            classes_identical=check.classes_identical,
            model_type=model_type,
            converters=converters,
            refused=check.reason,
            replica=self.replica,
        )
        details = self._record(record, details, data if check.passed else None)
        if not check.passed:
            raise _RefusedError(
                f"the compiled form disagrees with the original: {check.reason}", details
            )
        if stored.is_file():
            mark_used(stored)
        else:
            _write_atomically(stored, data)
        return form, details

    def _recorded_form(self, loaded: LoadedModel, stored: Path, known: CompileDetails) -> bytes:
        """The recorded compiled form's bytes (cache, then artifact store); b"" when neither has it.

        CompilationError when the bytes found are not the ones the ledger recorded.
        """
        from modelreg.serving.compiled import onnx_digest

        if stored.is_file():
            data, origin = stored.read_bytes(), str(stored)
            fix = "delete the file to compile the version again"
        elif known.artifact_uri and isinstance(self.source, CompilationSink):
            try:
                data = self.source.compiled_artifact(known.artifact_uri)
            except ModelregError as exc:
                log.warning(
                    "%s v%d: the recorded compiled form is not available (%s); converting again",
                    loaded.name,
                    loaded.version,
                    exc.message,
                )
                return b""
            origin, fix = known.artifact_uri, "delete it from the run's artifacts"
        else:
            return b""
        if onnx_digest(data) != known.compiled_digest:
            refusal = (
                f"the compiled form at {origin} does not match the sha256 the ledger recorded "
                f"({known.compiled_digest}); it was changed after verification. Refused; {fix}"
            )
            log.error("%s v%d: %s", loaded.name, loaded.version, refusal)
            raise CompilationError(refusal)
        return data

    def _record(
        self, record: ServingRecord, details: CompileDetails, artifact: bytes | None
    ) -> CompileDetails:
        """Record the verification (and keep a passed form beside the version), as recorded.

        A failure to record is logged and does not stop serving.
        """
        if not isinstance(self.source, CompilationSink):
            return details
        try:
            return self.source.record_compilation(record, details, artifact)
        except ModelregError as exc:
            log.warning(
                "%s v%d: could not record the compiled form's verification: %s",
                record.name,
                record.version,
                exc.message,
            )
            return details

    def fetch(self, name: str, version: int, manifest: Manifest) -> Path:
        """The verified local copy of a version: from the cache, or downloaded into it."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.cache_dir, 0o700)
        entry = self.cache_dir / manifest.digest.removeprefix("sha256:")
        if entry.is_dir():
            if not verify(entry, manifest):
                mark_used(entry)
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
        mark_used(entry)
        return entry


class _RefusedError(CompilationError):
    """A compiled form that failed verification, with the verification that refused it."""

    def __init__(self, reason: str, details: CompileDetails) -> None:
        super().__init__(reason)
        self.details = details


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600) so that a reader sees the old file, none, or all of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".compiled-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
