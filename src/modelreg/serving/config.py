"""Configuration of a model server: which models it serves and how (a TOML file or flags).

A config file serves several models from one process::

    max_body_bytes = 10485760          # larger scoring bodies get 413
    reload_token = "s3cret"            # or MODELREG_RELOAD_TOKEN; unset disables /-/reload
    cache_dir = "/var/cache/modelreg"  # default: <MODELREG_HOME>/serving-cache
    cache_max_bytes = 10737418240      # prune least recently used versions past this (10 GiB)
    flush_interval = 2.0               # seconds between experiment count / prediction log writes
    prediction_sample_rate = 1.0       # share of experiment requests kept in the prediction log

    [[models]]
    name = "churn"                     # the first model also answers POST /invocations
    alias = "production"               # follow an alias (the default) ...
    poll_interval = 60                 # seconds between alias checks (default 1)

    [[models]]
    name = "fraud"
    version = 3                        # ... or pin one version
    max_batch_size = 1                 # 1 turns micro-batching off
    compile = "off"                    # always the MLflow pyfunc (default "auto")
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelreg.domain import MAX_VERSION_NUMBER, CompileMode, check_model_name, validation_problem
from modelreg.errors import InvalidInputError, InvalidNameError

DEFAULT_ALIAS = "production"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_CACHE_MAX_BYTES = 10 * 1024**3

RELOAD_TOKEN_ENV = "MODELREG_RELOAD_TOKEN"  # noqa: S105 - the variable's name, not a secret


class ModelConfig(BaseModel):
    """One served model: what to resolve (an alias or a pinned version) and how to batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registered model name.")
    alias: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="MLflow alias to follow; 'production' when neither alias nor version is set.",
    )
    version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_VERSION_NUMBER,
        description="Pinned MLflow version number (no alias following).",
    )
    poll_interval: float = Field(
        default=1.0,
        gt=0,
        le=86400,
        description="Seconds between alias checks; each check is one cheap MLflow call.",
    )
    max_batch_size: int = Field(
        default=64, ge=1, le=100_000, description="Requests merged into one predict call; 1 = off."
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=10_000,
        description="How long a request may wait for others to join its batch.",
    )
    compile: CompileMode = Field(
        default="auto",
        description="'auto': serve a verified compiled (ONNX) form of each version when one "
        "can be made, else the MLflow pyfunc, unless the policy's [serving] compile says "
        "otherwise; 'require': refuse a version without a verified compiled form (the version "
        "served before keeps serving); 'off': always the pyfunc. Not 'auto' wins over the policy.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        try:
            return check_model_name(value)
        except InvalidNameError as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _alias_or_version(self) -> Self:
        if self.alias is not None and self.version is not None:
            raise ValueError(
                f"model {self.name!r} sets both alias and version; "
                "give an alias to follow promotions or a version to pin one"
            )
        if self.alias is None and self.version is None:
            object.__setattr__(self, "alias", DEFAULT_ALIAS)
        return self

    @property
    def reference(self) -> str:
        """How the model is addressed: ``name@alias`` or ``name/version``."""
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


class ServerConfig(BaseModel):
    """Everything a model server needs besides where MLflow and the ledger are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[ModelConfig] = Field(
        min_length=1, description="Served models; the first one answers POST /invocations."
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        ge=1,
        description="Largest accepted scoring body in bytes; larger ones get 413.",
    )
    reload_token: str | None = Field(
        default=None,
        min_length=16,
        description=f"Bearer token for POST /-/reload (or ${RELOAD_TOKEN_ENV}); "
        "when unset the endpoint answers 404.",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Content-addressed model cache; defaults to <MODELREG_HOME>/serving-cache.",
    )
    cache_max_bytes: int = Field(
        default=DEFAULT_CACHE_MAX_BYTES,
        gt=0,
        description="Size budget of the model cache in bytes (default 10 GiB): after each "
        "load, the least recently used versions not being served are removed until the "
        "cache fits; what is served stays even when it alone is larger.",
    )
    flush_interval: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Seconds between writes of experiment counts and prediction records "
        "(one write of each per interval).",
    )
    prediction_sample_rate: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of experiment requests whose prediction is logged for feedback.",
    )
    prediction_buffer: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Prediction records held between flushes; more are dropped and counted.",
    )
    shadow_queue: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Mirrored requests waiting for a shadow treatment; "
        "more are dropped and counted.",
    )
    shadow_concurrency: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Mirrored requests scored at once (off the request path).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [model.name for model in self.models]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"each model may be served once; {', '.join(duplicates)} appear more than once"
            )
        return self

    def updated(self, **fields: Any) -> ServerConfig:
        """A copy with the fields that are not None replaced, validated again."""
        return build_config({**self.model_dump(), **_given(fields)}, "serve options")

    def with_compile(self, mode: CompileMode | None) -> ServerConfig:
        """A copy whose every model uses ``mode`` (``--compile``); None keeps each model's own."""
        if mode is None:
            return self
        return self.updated(models=[{**m.model_dump(), "compile": mode} for m in self.models])

    def with_reload_token(self, token: str | None) -> ServerConfig:
        """A copy with ``reload_token`` set to ``token`` when the config sets none.

        ``token`` is ``Settings().serving.reload_token`` (``$MODELREG_RELOAD_TOKEN``);
        a short one raises InvalidInputError as a short one in the file does.
        """
        if self.reload_token or not token:
            return self
        return self.updated(reload_token=token)


def _given(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def build_config(data: dict[str, Any], source: str = "serving config") -> ServerConfig:
    """Validate ``data`` as a :class:`ServerConfig`; InvalidInputError lists every problem."""
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(validation_problem(error) for error in exc.errors())
        raise InvalidInputError(f"invalid {source}: {problems}") from None


def load_config(path: Path) -> ServerConfig:
    """Read and validate a TOML config file; InvalidInputError says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read serving config {str(path)!r}: {exc.strerror or exc}"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"serving config {str(path)!r} is not valid TOML: {exc}") from None
    return build_config(data, f"serving config {str(path)!r}")


def single_model_config(
    name: str,
    *,
    alias: str | None = None,
    version: int | None = None,
    poll_interval: float | None = None,
    max_batch_size: int | None = None,
    max_wait_ms: float | None = None,
    max_body_bytes: int | None = None,
    cache_dir: Path | None = None,
    cache_max_bytes: int | None = None,
    compile: CompileMode | None = None,
) -> ServerConfig:
    """The config ``modelreg serve NAME`` builds from its flags (None: the default)."""
    model = _given(
        {
            "name": name,
            "alias": alias,
            "version": version,
            "poll_interval": poll_interval,
            "max_batch_size": max_batch_size,
            "max_wait_ms": max_wait_ms,
            "compile": compile,
        }
    )
    server = _given(
        {
            "max_body_bytes": max_body_bytes,
            "cache_dir": cache_dir,
            "cache_max_bytes": cache_max_bytes,
        }
    )
    return build_config({"models": [model], **server}, "serve options")


#: Memory one server process is assumed to need. Measured: a worker serving the course's
#: RandomForest (200 trees, depth 10; 5 MB skops file) has 322 MiB resident after load and
#: under load (Python, MLflow, pandas, scikit-learn, the registry client: about 230 MiB
#: private, 96 MiB shared libraries). A reload holds the old and the new version at once
#: and a batch its frames, so a worker is budgeted at half a GiB; a much larger model
#: needs --workers N.
WORKER_MEMORY_BYTES = 512 * 1024**2
MAX_WORKERS = 64


@dataclass(frozen=True)
class WorkerChoice:
    """How many server processes ``modelreg serve`` runs, and the one-line reason."""

    workers: int
    reason: str


def choose_workers(
    *,
    cpus: int,
    cpu_quota: float | None,
    available_bytes: int | None,
    per_worker_bytes: int = WORKER_MEMORY_BYTES,
) -> WorkerChoice:
    """One worker per usable core, as many as the available memory holds (at least one).

    ``cpus`` is the number of cores the process may run on (its affinity),
    ``cpu_quota`` the cgroup's CPU limit in cores (None: unlimited; a
    fractional quota is rounded down, since a process beyond the quota is
    throttled rather than given more), ``available_bytes`` the memory left to
    use (None: unknown, no limit from memory). Never more than
    :data:`MAX_WORKERS`. The reason reads like
    ``2 workers (2 CPUs, 21.3 GiB available; --workers N to choose)``.
    """
    cores = max(1, cpus)
    limits = [f"{cores} CPU{'s' if cores != 1 else ''}"]
    workers = cores
    if cpu_quota is not None:
        limits.append(f"a CPU quota of {cpu_quota:g}")
        workers = min(workers, max(1, math.floor(cpu_quota)))
    if available_bytes is not None:
        limits.append(f"{available_bytes / 1024**3:.1f} GiB available")
        by_memory = available_bytes // per_worker_bytes
        if by_memory < workers:
            limits.append(f"{per_worker_bytes / 1024**3:.1f} GiB per worker")
        workers = min(workers, max(1, by_memory))
    workers = min(workers, MAX_WORKERS)
    noun = "worker" if workers == 1 else "workers"
    return WorkerChoice(workers, f"{workers} {noun} ({', '.join(limits)}; --workers N to choose)")


def usable_cpus() -> int:
    """Cores this process may run on (its CPU affinity), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def cgroup_dirs(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self")) -> list[Path]:
    """The cgroup v2 directories of this process, innermost first (limits apply from each)."""
    try:
        lines = (proc / "cgroup").read_text().splitlines()
    except OSError:
        return []
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:
        return []
    inner = root / path.lstrip("/")
    dirs = [inner, *inner.parents]
    # Inside a container the namespace root is mounted at root itself.
    return [d for d in dirs if d == root or root in d.parents]


def cgroup_cpu_quota(dirs: list[Path]) -> float | None:
    """The tightest ``cpu.max`` quota along ``dirs`` in cores, None when unlimited."""
    quotas = []
    for directory in dirs:
        try:
            quota, period = (directory / "cpu.max").read_text().split()
        except (OSError, ValueError):
            continue
        if quota != "max" and period.isdigit() and quota.isdigit() and int(period) > 0:
            quotas.append(int(quota) / int(period))
    return min(quotas, default=None)


def available_memory(dirs: list[Path], meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes this process may still use: MemAvailable, or less under a cgroup memory.max."""
    limits = []
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for directory in dirs:
        try:
            limit = (directory / "memory.max").read_text().strip()
            used = (directory / "memory.current").read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and used.isdigit():
            limits.append(max(0, int(limit) - int(used)))
    return min(limits, default=None)
