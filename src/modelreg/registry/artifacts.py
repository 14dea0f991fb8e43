"""Artifacts: download a version and hash it once, verify it against its recorded manifest.

One download-and-hash flow (:meth:`Artifacts.fetch`) serves verification and
adoption's manifest building: each file is read and hashed exactly once, and
the comparison with the recorded manifest works on the two manifests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from modelreg.domain import check_model_name
from modelreg.errors import (
    ArtifactsNotFoundError,
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    ModelNotReadyError,
)
from modelreg.integrity import Manifest, build_manifest, verify
from modelreg.ledger import Ledger
from modelreg.mlflow_gateway import MlflowGateway, temporary_dir
from modelreg.registry.reads import Reads
from modelreg.settings import Settings
from modelreg.views import VerifyResult

Progress = Callable[[str, int, int], None]
"""Told ``(label, done, total)`` as a long operation goes on."""


def no_progress(_label: str, _done: int, _total: int) -> None:
    """A :data:`Progress` that reports nothing."""


@dataclass(frozen=True)
class Fetched:
    """A version's artifacts on disk and the manifest of what was downloaded (hashed once)."""

    model_dir: Path
    manifest: Manifest


class Artifacts:
    """Download versions' artifacts and verify them against the manifests in the ledger."""

    def __init__(
        self, settings: Settings, gateway: MlflowGateway, ledger: Ledger, reads: Reads
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.ledger = ledger
        self.reads = reads

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A temporary directory for downloads under the configured download dir, removed after."""
        with temporary_dir(self.settings.resolved_download_dir()) as tmp:
            yield Path(tmp)

    def download(self, name: str, version: int, dst: Path) -> Path:
        """Download a version's artifacts under ``dst`` and return the model directory."""
        check_model_name(name)
        return self.gateway.download_version(name, version, dst)

    def store_compiled(self, name: str, version: int, digest: str, data: bytes) -> str:
        """Keep a version's compiled form among its run's artifacts; its ``runs:/`` URI.

        Stored as ``modelreg-compiled/<digest>/model.onnx``, outside the model
        directory, so the version's files and manifest are untouched.
        ModelNotReadyError when the version has no run to keep it beside.
        """
        run_id = self.gateway.version(name, version).run_id
        if not run_id:
            raise ModelNotReadyError(
                name, "the version has no run to keep its compiled form beside"
            )
        folder = f"modelreg-compiled/{digest.removeprefix('sha256:')}"
        return self.gateway.store_derived(run_id, folder, "model.onnx", data)

    def compiled(self, uri: str) -> bytes:
        """The bytes of a compiled form kept by :meth:`store_compiled` (its ``runs:/`` URI)."""
        if not uri.startswith("runs:/"):
            raise InvalidInputError(f"not a compiled artifact's URI: {uri[:100]!r}")
        return self.gateway.fetch_derived(uri)

    def fetch(self, name: str, version: int, dst: Path) -> Fetched:
        """Download a version under ``dst`` and hash every file once into its manifest.

        Raises ArtifactsNotFoundError or BackendError when the store will not hand
        the version over, InvalidInputError when it holds a symlink or special file.
        """
        model_dir = self.gateway.download_version(name, version, dst)
        return Fetched(model_dir, build_manifest(model_dir))

    def verify(
        self, name: str, ref: str | int | None = None, progress: Progress = no_progress
    ) -> list[VerifyResult]:
        """Re-hash artifacts and compare them with the manifests recorded at registration."""
        check_model_name(name)
        numbers = (
            [self.reads.resolve(name, ref)]
            if ref is not None
            else [v.version for v in self.gateway.versions(name)]
        )
        if ref is None:
            self.gateway.model(name)
        results = []
        for done, number in enumerate(numbers, start=1):
            progress(f"verifying {name} v{number}", done, len(numbers))
            results.append(self.verify_one(name, number))
        return results

    def verify_one(self, name: str, number: int) -> VerifyResult:
        """Download one version, hash it once and compare it with its recorded manifest.

        A version not adopted yet has no manifest: it is reported as a problem,
        with the digest observed now.
        """
        record = self.ledger.version_record(name, number)
        expected = record.manifest if record is not None else None
        actual: str | None = None
        with self.scratch() as tmp:
            try:
                fetched = self.fetch(name, number, tmp)
            except BackendUnavailableError:
                raise
            except (BackendError, ArtifactsNotFoundError):
                if expected is None:
                    raise
                problems = self._verify_each(name, number, expected, tmp / "each")
            else:
                actual = fetched.manifest.digest
                problems = (
                    ["not adopted: no manifest recorded yet (run `modelreg sync`)"]
                    if expected is None
                    else differences(expected, fetched.manifest)
                )
        return VerifyResult(
            name=name,
            version=number,
            semver=str(record.semver) if record else None,
            expected_digest=record.digest if record else None,
            actual_digest=actual,
            ok=not problems,
            problems=problems,
        )

    def _verify_each(self, name: str, number: int, manifest: Manifest, dst: Path) -> list[str]:
        """Verify file by file when the store will not hand over the whole version.

        MLflow's artifact proxy refuses to serve a file replaced by a symlink (the
        path resolves outside its root); that is tampering, not an outage.
        """
        paths = [path for path, _sha in manifest.files]
        dst.mkdir(parents=True, exist_ok=True)
        refused = self.gateway.download_version_files(name, number, paths, dst)
        unreadable = {f"missing: {path}" for path in refused}
        problems = [p for p in verify(dst, manifest) if p not in unreadable]
        problems += [
            f"modified: {path} (the artifact store refused to serve it: {why[:160]})"
            for path, why in refused.items()
        ]
        return sorted(problems, key=lambda p: p.split(": ", 1)[1])


def differences(expected: Manifest, actual: Manifest) -> list[str]:
    """How ``actual`` differs from ``expected``, in :func:`modelreg.integrity.verify`'s lines.

    ``modified: <path>``, ``missing: <path>`` or ``unexpected: <path>``, sorted by
    path; empty when they match. Compares two manifests, so nothing is hashed again.
    """
    wanted = dict(expected.files)
    found = dict(actual.files)
    problems = [
        (path, "unexpected" if path not in wanted else "modified")
        for path, sha in found.items()
        if wanted.get(path) != sha
    ]
    problems.extend((path, "missing") for path in wanted if path not in found)
    return [f"{what}: {path}" for path, what in sorted(problems)]
