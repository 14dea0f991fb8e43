"""Where a model server gets its models: the narrow protocols serving depends on.

Serving never imports the registry package. It needs four reads, named
here; :class:`modelreg.Registry` has all four and satisfies
:class:`ModelSource` structurally, and a test can hand in anything else that
does; likewise :class:`ExperimentSource` (A/B experiments) and
:class:`ReplicaSink` (where a replica reports what it serves). Keeping the
protocols this small keeps SQLAlchemy, Alembic and the governance policy out
of a replica's imports until the process that builds the source (the CLI)
brings them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from modelreg.domain import CompileDetails, ReplicaReport, ServingRecord
from modelreg.experiments.definition import (
    ExperimentRoute,
    Feedback,
    FeedbackResult,
    PredictionRecord,
    VariantCounts,
)


class ServableVersion(Protocol):
    """What a start-up error lists about a version: its number and the aliases it holds."""

    @property
    def version(self) -> int:
        """The MLflow version number."""
        ...

    @property
    def aliases(self) -> Sequence[str]:
        """The MLflow aliases pointing at this version, e.g. ``["staging"]``."""
        ...


class ModelSource(Protocol):
    """The reads a model server makes; every method blocks, so slots call them in threads.

    Errors are those of :mod:`modelreg.errors`: NotFoundError (and its
    Model/VersionNotFoundError) for what does not exist, BackendError when
    MLflow, the ledger or the object store cannot be reached.
    """

    def alias_version(self, name: str, alias: str) -> int:
        """The version number ``name@alias`` points at now (what the watcher polls)."""
        ...

    def serving_record(self, name: str, version: int) -> ServingRecord:
        """Semver, digest and sha256 manifest of a version about to be served.

        ModelNotReadyError when the version has no manifest to verify against.
        """
        ...

    def download(self, name: str, version: int, dst: Path) -> Path:
        """Download a version's artifacts under directory ``dst``; the model directory."""
        ...

    def versions(self, name: str) -> Sequence[ServableVersion]:
        """Every version of ``name``, oldest first (for "serve one of these instead")."""
        ...


class ExperimentSource(Protocol):
    """What a model server reads and writes about A/B experiments; every method blocks.

    :class:`modelreg.Registry` satisfies it (the ledger keeps experiments,
    counts, the prediction log and feedback). A server built without one
    serves every request with the default variant.
    """

    def experiment(self, name: str) -> ExperimentRoute | None:
        """The route of ``name``'s running or stopped experiment; None when it has none."""
        ...

    def record_variant_counts(self, replica: str, counts: Sequence[VariantCounts]) -> None:
        """Store this replica's cumulative counts (replacing what it stored before)."""
        ...

    def log_predictions(self, records: Sequence[PredictionRecord]) -> None:
        """Append predictions to the bounded prediction log (duplicates ignored)."""
        ...

    def record_feedback(self, feedback: Feedback) -> FeedbackResult:
        """Join an outcome to a logged prediction.

        NotFoundError for an unknown request id, ExpiredError once it is past
        the log's retention, ConflictError for a different outcome than the
        one already recorded; an identical repeat is a DUPLICATE.
        """
        ...


class ReplicaSink(Protocol):
    """Where a replica's reports go; :class:`modelreg.Registry` is one (it blocks: threads)."""

    def record_replica(self, report: ReplicaReport) -> None:
        """Store the report; BackendError when the ledger cannot be reached."""
        ...


@runtime_checkable
class CompilationSink(Protocol):
    """Where a model server records the compiled forms it made and how they verified.

    A :class:`ModelSource` that is also a CompilationSink (the ``Registry``)
    gets a COMPILE ledger event per compiled artifact and outcome; without
    one, compiled forms are still verified on every load, just not recorded.
    """

    def record_compilation(
        self, record: ServingRecord, details: CompileDetails, artifact: bytes | None = None
    ) -> CompileDetails:
        """Record a compiled form of ``record``'s version and store a verified ``artifact``.

        Returns the details as recorded: with ``artifact_uri`` set when the
        artifact is kept beside the version (or already was).
        """
        ...

    def compiled_artifact(self, uri: str) -> bytes:
        """The bytes of a compiled artifact kept beside a version (``artifact_uri``)."""
        ...
