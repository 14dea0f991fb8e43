"""Capture lineage: git state, data fingerprints, DVC outputs, environment and parameters.

Everything here reads the working tree, the filesystem or the interpreter and returns domain
values; logging them to MLflow is the gateway's job, so this module never imports mlflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pydantic

from modelreg.domain import (
    DataFingerprint,
    DataKind,
    EnvironmentInfo,
    GitInfo,
    LineageRecord,
    validation_problem,
)
from modelreg.errors import InvalidInputError, LineageError
from modelreg.integrity import build_manifest, sha256_file

if TYPE_CHECKING:
    import numpy as np

# numpy, pandas and yaml are imported where data is fingerprinted: reading a lineage
# record (every `show`) must not pay ~0.4 s for them.

TAG_PREFIX = "modelreg.lineage."
"""Prefix of every lineage tag, so ``tags."modelreg.lineage.git_commit" = '...'`` searches work."""

TAG_VALUE_LIMIT = 5000
"""Longest tag value written; MLflow stores at least this much on every backend."""

ML_PACKAGES = (
    "mlflow",
    "scikit-learn",
    "numpy",
    "pandas",
    "scipy",
    "xgboost",
    "lightgbm",
    "torch",
    "tensorflow",
    "skops",
    "cloudpickle",
)
"""Distributions whose versions decide whether a model loads and predicts the same way."""

_GIT_TIMEOUT = 5.0
_SUPPORTED_DATA = (
    "a pandas DataFrame or Series, a numpy ndarray, "
    "or a path (str or pathlib.Path) to a file or directory"
)
# MLflow tag keys allow only these characters; anything else in a data name becomes "_".
_TAG_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


# --- git -----------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> bytes | None:
    """Run git in ``cwd`` and return stdout, or None when it fails, hangs or is absent."""
    # A fixed locale and no optional locks keep output parseable and never touch the index.
    env = {**os.environ, "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=_GIT_TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _text(output: bytes | None) -> str | None:
    if output is None:
        return None
    text = output.decode("utf-8", errors="replace").strip()
    return text or None


def strip_credentials(url: str) -> str:
    """Remove any ``user[:password]@`` from a URL so tokens never reach tags or logs.

    scp-style remotes (``git@host:org/repo.git``) carry no secret and are returned as is.
    """
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host))


def _diff_sha256(cwd: Path, base: str) -> str:
    """Hash the tracked diff against ``base`` plus every untracked file's name and content."""
    digest = hashlib.sha256()
    # Explicit prefixes and no external/colour diff make the bytes independent of user config.
    diff = _git(
        cwd,
        "diff",
        "--binary",
        "--no-color",
        "--no-ext-diff",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        base,
    )
    digest.update(diff or b"")
    listed = _git(cwd, "ls-files", "--others", "--exclude-standard", "-z") or b""
    for name in sorted(n for n in listed.split(b"\0") if n):
        path = cwd / os.fsdecode(name)
        digest.update(b"\0untracked\0" + name + b"\0")
        if path.is_file():
            digest.update(sha256_file(path).encode("ascii"))
    return digest.hexdigest()


def _remote(cwd: Path) -> str | None:
    names = (_text(_git(cwd, "remote")) or "").split()
    if not names:
        return None
    name = "origin" if "origin" in names else names[0]
    url = _text(_git(cwd, "remote", "get-url", name))
    return strip_credentials(url) if url else None


def capture_git(path: str | Path = ".") -> GitInfo | None:
    """Describe the git checkout containing ``path``; None outside a repo or without git.

    ``diff_sha256`` is set only when the tree is dirty and identifies the exact uncommitted
    change (``git diff HEAD`` plus untracked files' names and contents).
    """
    cwd = Path(path)
    if not cwd.is_dir() or shutil.which("git") is None:
        return None
    toplevel = _text(_git(cwd, "rev-parse", "--show-toplevel"))
    if toplevel is None:
        return None
    top = Path(toplevel)
    commit = _text(_git(top, "rev-parse", "--verify", "--quiet", "HEAD"))
    # symbolic-ref fails on a detached HEAD (branch None) but works before the first commit.
    branch = _text(_git(top, "symbolic-ref", "--quiet", "--short", "HEAD"))
    status = _git(top, "status", "--porcelain", "--untracked-files=all")
    dirty = bool(status and status.strip())
    diff_sha256 = None
    if dirty:
        # Before the first commit there is no HEAD; diff against the empty tree instead.
        base = commit or _text(_git(top, "hash-object", "-t", "tree", os.devnull)) or "HEAD"
        diff_sha256 = _diff_sha256(top, base)
    return GitInfo(
        commit=commit, branch=branch, dirty=dirty, diff_sha256=diff_sha256, remote=_remote(top)
    )


# --- data ----------------------------------------------------------------------------------


def _header(**fields: object) -> bytes:
    """Encode the structure of a dataset so schema changes alter the fingerprint."""
    return json.dumps(fields, sort_keys=True, default=repr).encode("utf-8") + b"\0"


def _pandas_fingerprint(data: Any, name: str, version: str | None) -> DataFingerprint:
    import numpy as np
    import pandas as pd

    frame = data.to_frame() if isinstance(data, pd.Series) else data
    # repr keeps 0 and "0" distinct as column names; str is what users read in `columns`.
    header = _header(
        kind=type(data).__name__,
        columns=[repr(c) for c in frame.columns],
        dtypes=[str(t) for t in frame.dtypes],
        index=str(frame.index.dtype),
    )
    try:
        rows = pd.util.hash_pandas_object(frame, index=True)
    except TypeError as exc:
        raise InvalidInputError(
            f"cannot fingerprint data {name!r}: a column holds unhashable values ({exc}); "
            "convert lists or dicts in cells to strings first"
        ) from exc
    digest = hashlib.sha256(header)
    digest.update(np.ascontiguousarray(rows.to_numpy(dtype="uint64")).tobytes())
    if isinstance(data, pd.Series):
        columns = None if data.name is None else [str(data.name)]
    else:
        columns = [str(c) for c in frame.columns]
    return DataFingerprint(
        name=name,
        kind=DataKind.PANDAS,
        sha256=digest.hexdigest(),
        version=version,
        rows=len(frame),
        columns=columns,
    )


def _numpy_fingerprint(
    data: np.ndarray[Any, Any], name: str, version: str | None
) -> DataFingerprint:
    import numpy as np
    import pandas as pd

    digest = hashlib.sha256(_header(dtype=data.dtype.descr, shape=list(data.shape)))
    if data.dtype.hasobject:
        # Object arrays hold pointers, whose bytes differ every run; hash the values instead.
        digest.update(pd.util.hash_array(data.ravel(order="C")).tobytes())
    else:
        digest.update(np.ascontiguousarray(data).tobytes())
    return DataFingerprint(
        name=name,
        kind=DataKind.NUMPY,
        sha256=digest.hexdigest(),
        version=version,
        rows=data.shape[0] if data.ndim else None,
    )


def _path_fingerprint(data: str | Path, name: str, version: str | None) -> DataFingerprint:
    path = Path(data).expanduser()
    if not path.exists():
        raise InvalidInputError(
            f"cannot fingerprint data {name!r}: {str(data)!r} does not exist; "
            "pass the path of the training data file or directory"
        )
    source = str(path.resolve())
    if path.is_dir():
        # DVC links workspace files into its cache, so data directories follow links.
        manifest = build_manifest(path, exclude_dirs={".git"}, follow_symlinks=True)
        sha = manifest.digest.removeprefix("sha256:")
        return DataFingerprint(
            name=name, kind=DataKind.DIRECTORY, sha256=sha, version=version, source=source
        )
    return DataFingerprint(
        name=name, kind=DataKind.FILE, sha256=sha256_file(path), version=version, source=source
    )


def fingerprint(
    data: object, name: str = "training", version: str | None = None
) -> DataFingerprint:
    """Return a content fingerprint of a DataFrame/Series, ndarray, file or directory.

    Equal data gives equal fingerprints; any change to a value, column name, dtype, row
    order, file content or file name changes ``sha256``.
    """
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame | pd.Series):
        return _pandas_fingerprint(data, name, version)
    if isinstance(data, np.ndarray):
        return _numpy_fingerprint(data, name, version)
    if isinstance(data, str | Path):
        return _path_fingerprint(data, name, version)
    raise InvalidInputError(
        f"cannot fingerprint data {name!r} of type {type(data).__name__}; "
        f"supported: {_SUPPORTED_DATA}"
    )


def _dvc_hash(out: Mapping[str, Any]) -> str | None:
    # DVC records md5 (".dir" suffix for directories); name the algorithm in the value.
    if isinstance(out.get("sha256"), str):
        return str(out["sha256"])
    for algorithm in ("md5", "etag", "checksum"):
        value = out.get(algorithm)
        if isinstance(value, str) and value:
            return f"{algorithm}:{value}"
    return None


def dvc_entries(path: str | Path = ".") -> list[DataFingerprint]:
    """Return one ``kind="dvc"`` fingerprint per output of every stage in ``dvc.lock``.

    ``path`` is the directory holding ``dvc.lock`` (or the file itself). No file gives [].
    """
    given = Path(path)
    lock = given if given.is_file() else given / "dvc.lock"
    if not lock.is_file():
        return []

    def malformed(why: str) -> LineageError:
        return LineageError(
            f"{lock} is malformed: {why}; regenerate it with `dvc repro` or `dvc commit`"
        )

    import yaml

    try:
        doc = yaml.safe_load(lock.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise malformed(f"not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise malformed("expected a mapping at the top level")
    # Lock schema 2.0 nests stages under "stages"; schema 1 put them at the top level.
    stages = doc.get("stages", doc)
    if not isinstance(stages, dict):
        raise malformed('"stages" must map stage names to stage entries')
    root = lock.parent.resolve()
    entries: list[DataFingerprint] = []
    for stage, body in stages.items():
        if not isinstance(body, dict):
            raise malformed(f"stage {stage!r} is not a mapping")
        outs = body.get("outs") or []
        if not isinstance(outs, list):
            raise malformed(f'"outs" of stage {stage!r} is not a list')
        for out in outs:
            if not isinstance(out, dict) or not isinstance(out.get("path"), str):
                raise malformed(f'an output of stage {stage!r} has no "path"')
            sha = _dvc_hash(out)
            if sha is None:
                raise malformed(f"output {out['path']!r} of stage {stage!r} has no md5 or sha256")
            entries.append(
                DataFingerprint(
                    name=out["path"],
                    kind=DataKind.DVC,
                    sha256=sha,
                    version=str(stage),
                    source=str(root / out["path"]),
                )
            )
    return entries


# --- environment ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass  # not Linux: fall back to what platform knows
    return platform.processor() or platform.machine() or "unknown"


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if done.returncode != 0:
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def _installed(names: Sequence[str]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def capture_environment() -> EnvironmentInfo:
    """Describe this interpreter, OS, CPU, GPUs and the installed ML package versions."""
    return EnvironmentInfo(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=_cpu_model(),
        cpu_count=os.cpu_count() or 1,
        gpus=_gpus(),
        packages=_installed(ML_PACKAGES),
    )


def pip_freeze() -> str:
    """Return ``name==version`` lines for every installed distribution, sorted, no subprocess.

    When a name is installed twice the first on ``sys.path`` wins, as it is the one imported.
    """
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue  # a broken install without metadata names nothing usable
        key = re.sub(r"[-_.]+", "-", name).lower()
        seen.setdefault(key, f"{name}=={dist.version}")
    lines = [seen[key] for key in sorted(seen)]
    return "\n".join(lines) + "\n" if lines else ""


# --- records -------------------------------------------------------------------------------


def build_record(
    *,
    run_id: str | None,
    params: Mapping[str, object],
    data: Sequence[DataFingerprint],
    git: GitInfo | None,
    environment: EnvironmentInfo | None,
) -> LineageRecord:
    """Assemble a :class:`LineageRecord` stamped now (UTC), with parameters as strings."""
    return LineageRecord(
        run_id=run_id,
        git=git,
        data=list(data),
        params={str(key): str(value) for key, value in params.items()},
        environment=environment,
        captured_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _data_tag_names(data: Sequence[DataFingerprint]) -> list[str]:
    names: list[str] = []
    for index, item in enumerate(data):
        tag_name = _TAG_KEY_UNSAFE.sub("_", item.name) or "data"
        # Two inputs with one name must not overwrite each other's tag.
        names.append(tag_name if tag_name not in names else f"{tag_name}_{index}")
    return names


def lineage_tags(record: LineageRecord) -> dict[str, str]:
    """Return the searchable ``modelreg.lineage.*`` MLflow tags for ``record``.

    Keys without a value are left out (``missing`` too, when nothing is missing).
    """
    values: dict[str, str | None] = {}
    if record.git is not None:
        values["git_commit"] = record.git.commit
        values["git_branch"] = record.git.branch
        if record.git.dirty is not None:
            values["git_dirty"] = "true" if record.git.dirty else "false"
        values["git_remote"] = record.git.remote
    if record.data:
        values["data_sha256"] = record.data[0].sha256
        values["data_version"] = record.data[0].version
        if len(record.data) > 1:
            for tag_name, item in zip(_data_tag_names(record.data), record.data, strict=True):
                values[f"data_sha256.{tag_name}"] = item.sha256
    if record.environment is not None:
        values["python"] = record.environment.python
    gaps = record.missing()
    values["complete"] = "false" if gaps else "true"
    values["missing"] = ", ".join(gaps) or None
    return {
        TAG_PREFIX + key: value[:TAG_VALUE_LIMIT]
        for key, value in values.items()
        if value is not None
    }


def record_to_json(record: LineageRecord) -> str:
    """Serialise ``record`` as indented JSON with sorted keys, so equal records give equal text."""
    return json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def record_from_json(text: str) -> LineageRecord:
    """Parse JSON written by :func:`record_to_json`; raise LineageError when it is not one."""
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise LineageError(f"lineage record is not valid JSON: {exc}") from exc
    try:
        record = LineageRecord.model_validate(body)
    except pydantic.ValidationError as exc:
        raise LineageError(
            f"lineage record JSON does not have the expected shape: "
            f"{exc.error_count()} problem(s), first: {validation_problem(exc.errors()[0])}"
        ) from exc
    if record.schema_version > LineageRecord().schema_version:
        raise LineageError(
            f"lineage record schema {record.schema_version} is newer than this modelreg "
            f"understands ({LineageRecord().schema_version}); upgrade modelreg to read it"
        )
    return record
