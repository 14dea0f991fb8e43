"""sha256 manifests of artifact directories: build one at registration, verify it before serving.

A :class:`Manifest` lists every regular file under a root as a (relative posix path, sha256)
pair. Its :attr:`Manifest.digest` is one string that changes when any file's path or content
changes, so the ledger can record it and serving replicas can compare it cheaply.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelreg.errors import InvalidInputError

CHUNK_SIZE = 1024 * 1024
"""Bytes read per chunk while hashing, so large artifacts never sit in memory whole."""

_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | Path) -> str:
    """Return the lowercase hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """Sorted (posix relative path, sha256 hex) pairs describing a directory's files."""

    files: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        # Sorting here makes equal contents compare equal and digest equally, however built.
        object.__setattr__(self, "files", tuple(sorted(self.files)))

    def __len__(self) -> int:
        return len(self.files)

    @property
    def digest(self) -> str:
        """Return ``"sha256:<hex>"`` over one ``<sha>  <path>`` line per file, sorted by path."""
        canonical = "".join(f"{sha}  {path}\n" for path, sha in self.files)
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        """Serialise to stable, indented JSON carrying the digest for a cross-check on load."""
        body = {"digest": self.digest, "files": dict(self.files)}
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse JSON written by :meth:`to_json`; raise InvalidInputError when it is not one."""
        try:
            body = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise InvalidInputError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("files"), dict):
            raise InvalidInputError(
                'manifest JSON must be an object with a "files" object mapping path to sha256'
            )
        pairs: list[tuple[str, str]] = []
        for path, sha in body["files"].items():
            if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
                raise InvalidInputError(
                    f"manifest entry {path!r} has no valid sha256 (64 lowercase hex digits)"
                )
            _check_relative(path)
            pairs.append((path, sha))
        manifest = cls(tuple(pairs))
        stated = body.get("digest")
        # A stated digest that disagrees means the file was edited or truncated by hand.
        if stated is not None and stated != manifest.digest:
            raise InvalidInputError(
                f"manifest digest {stated!r} does not match its files ({manifest.digest}); "
                "the manifest was altered, rebuild it from the artifacts"
            )
        return manifest


def _check_relative(path: str) -> None:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or str(pure) != path:
        raise InvalidInputError(
            f"manifest path {path!r} must be a normalised relative posix path inside the root"
        )


def _require_directory(root: str | Path) -> Path:
    base = Path(root)
    if not base.is_dir():
        raise InvalidInputError(f"{str(root)!r} is not a directory; pass the artifact directory")
    return base


def _walk(
    base: Path, exclude_dirs: Collection[str], follow_symlinks: bool
) -> Iterator[tuple[str, Path, bool]]:
    """Yield (relative posix path, path, is_regular_file) for every non-directory entry."""
    seen: set[str] = set()
    for current, dirnames, filenames in os.walk(base, followlinks=follow_symlinks):
        here = Path(current)
        if follow_symlinks:
            # Followed directory links can form cycles; visit each real directory once.
            real = os.path.realpath(current)
            if real in seen:
                dirnames.clear()
                continue
            seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if d not in exclude_dirs)
        names = list(filenames)
        if not follow_symlinks:
            # os.walk lists a symlink to a directory among dirnames; report it as an entry.
            links = [d for d in dirnames if (here / d).is_symlink()]
            dirnames[:] = [d for d in dirnames if d not in links]
            names.extend(links)
        for name in sorted(names):
            path = here / name
            try:
                mode = path.stat().st_mode if follow_symlinks else path.lstat().st_mode
            except OSError:  # a dangling link when following: no file to hash
                mode = 0
            yield path.relative_to(base).as_posix(), path, stat.S_ISREG(mode)


def build_manifest(
    root: str | Path,
    *,
    exclude_dirs: Collection[str] = (),
    follow_symlinks: bool = False,
) -> Manifest:
    """Hash every regular file under ``root`` into a :class:`Manifest`.

    Symlinks and special files are refused by default: a link can point outside the root,
    so its content would not travel with the artifact, and it can be retargeted later
    without any file under the root changing. ``follow_symlinks`` exists for data
    fingerprints, where DVC links workspace files into its cache on purpose.
    ``exclude_dirs`` names directories skipped at any depth (e.g. ``.git``).
    """
    base = _require_directory(root)
    pairs: list[tuple[str, str]] = []
    for relative, path, regular in _walk(base, exclude_dirs, follow_symlinks):
        if not regular:
            kind = "a symlink" if path.is_symlink() else "not a regular file"
            raise InvalidInputError(
                f"{relative!r} under {str(root)!r} is {kind}; copy the real file into the "
                "directory so the manifest covers what is actually shipped"
            )
        pairs.append((relative, sha256_file(path)))
    return Manifest(tuple(pairs))


def verify(root: str | Path, manifest: Manifest) -> list[str]:
    """List how the files under ``root`` differ from ``manifest``; empty when intact.

    Lines read ``modified: <path>``, ``missing: <path>`` or ``unexpected: <path>``, sorted
    by path. A symlink or special file where the manifest expects a file counts as modified.
    """
    base = _require_directory(root)
    expected = dict(manifest.files)
    found: set[str] = set()
    problems: list[tuple[str, str]] = []
    for relative, path, regular in _walk(base, (), follow_symlinks=False):
        found.add(relative)
        sha = expected.get(relative)
        if sha is None:
            problems.append((relative, "unexpected"))
        elif not regular or sha256_file(path) != sha:
            problems.append((relative, "modified"))
    problems.extend((path, "missing") for path in expected if path not in found)
    return [f"{what}: {path}" for path, what in sorted(problems)]
