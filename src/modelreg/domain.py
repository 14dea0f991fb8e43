"""Frozen value types shared by every layer: stages, actions, versions, events, lineage."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from modelreg.errors import InvalidInputError, InvalidNameError, InvalidStageError


class Stage(enum.StrEnum):
    """Lifecycle stage of a model version; values match MLflow's native stage names."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"

    @classmethod
    def parse(cls, text: str) -> Stage:
        """Return the stage named by ``text`` (case-insensitive) or raise InvalidStageError."""
        wanted = text.strip().lower()
        for stage in cls:
            if stage.value.lower() == wanted:
                return stage
        raise InvalidStageError(text)


class Action(enum.StrEnum):
    """What an append-only ledger event records."""

    REGISTER = "register"  # a version registered through modelreg
    ADOPT = "adopt"  # a version registered by a plain MLflow client, taken in by sync
    TRANSITION = "transition"  # an explicit stage change
    AUTO_ARCHIVE = "auto_archive"  # the previous Production version archived by a promotion
    ROLLBACK = "rollback"  # Production returned to an earlier version
    REPAIR = "repair"  # doctor re-applied the ledger state to MLflow
    REQUEST = "request"  # a promotion requested; gates passed, approvals pending
    APPROVE = "approve"  # an approval of the version's artifacts (bound to their digest)
    REJECT = "reject"  # a rejection with a comment; closes the open request
    DECLINE = "decline"  # a request or auto-promotion refused by the gates; nothing moved


class Outcome(enum.StrEnum):
    """What a governance operation came to."""

    VALID = "valid"  # validate: every gate passed
    INVALID = "invalid"  # validate: a gate failed
    REQUESTED = "requested"  # a request is open, approvals pending
    PENDING = "pending"  # an approval was recorded, more are needed
    PROMOTED = "promoted"  # the version entered Production
    REJECTED = "rejected"  # the open request was rejected
    DECLINED = "declined"  # auto-promotion refused by the gates; nothing moved


@dataclass(frozen=True)
class SemVer:
    """A semantic version ``MAJOR.MINOR.PATCH[+build]``; build metadata does not order.

    Equality compares the build too (``1.0.0+a != 1.0.0+b``), ordering only the
    core triple, as SemVer 2.0 prescribes.
    """

    major: int
    minor: int
    patch: int
    build: str = ""

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}+{self.build}" if self.build else core

    @property
    def core(self) -> tuple[int, int, int]:
        """The (major, minor, patch) triple that orders versions."""
        return (self.major, self.minor, self.patch)

    def __lt__(self, other: SemVer) -> bool:
        return self.core < other.core

    def __le__(self, other: SemVer) -> bool:
        return self.core <= other.core

    def __gt__(self, other: SemVer) -> bool:
        return self.core > other.core

    def __ge__(self, other: SemVer) -> bool:
        return self.core >= other.core


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event about to be appended; the ledger assigns its id and time."""

    model: str
    version: int
    action: Action
    actor: str
    from_stage: Stage | None = None
    to_stage: Stage | None = None
    reason: str = ""
    semver: str = ""
    digest: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Event(NewEvent):
    """One append-only ledger entry; the current state is a fold over these."""

    id: int
    at: datetime


@dataclass(frozen=True)
class StageChange:
    """One version's move from one stage to another, planned by the lifecycle."""

    version: int
    from_stage: Stage
    to_stage: Stage
    action: Action


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GitInfo(_Frozen):
    """Where the training code came from."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool = False
    diff_sha256: str | None = None
    remote: str | None = None


class DataFingerprint(_Frozen):
    """A content fingerprint of one training data input."""

    name: str
    kind: str  # "pandas", "numpy", "file", "directory", "dvc"
    sha256: str
    version: str | None = None
    rows: int | None = None
    columns: list[str] | None = None
    source: str | None = None


class EnvironmentInfo(_Frozen):
    """The software and hardware a model was trained on."""

    python: str
    platform: str
    cpu: str
    cpu_count: int
    gpus: list[str] = []
    packages: dict[str, str] = {}


class LineageRecord(_Frozen):
    """Everything needed to answer 'which run, code, data and settings produced this model?'."""

    schema_version: int = 1
    run_id: str | None = None
    git: GitInfo | None = None
    data: list[DataFingerprint] = []
    params: dict[str, str] = {}
    environment: EnvironmentInfo | None = None
    captured_at: str | None = None

    def missing(self) -> list[str]:
        """Name the parts of complete lineage that this record lacks."""
        gaps = []
        if self.git is None or not self.git.commit:
            gaps.append("git commit")
        if not self.data:
            gaps.append("data fingerprint")
        if not self.params:
            gaps.append("hyperparameters")
        if self.environment is None:
            gaps.append("environment")
        return gaps


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a safe model name, else raise InvalidNameError.

    Names end up in URLs, file paths and MLflow filter strings, so only a
    conservative character set is accepted and path tricks (``..``) never pass.
    """
    if not name:
        raise InvalidNameError(name, "it is empty")
    if len(name) > 200:
        raise InvalidNameError(name, f"it is {len(name)} characters long")
    if ".." in name or not _NAME.match(name):
        raise InvalidNameError(name, "it contains characters that are not allowed")
    return name


def parse_version_number(text: str) -> int:
    """Parse an MLflow version number given as text (``"3"``)."""
    stripped = text.strip()
    if not stripped.isdigit() or len(stripped) > 9 or int(stripped) < 1:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InvalidInputError(
            f"invalid version {shown!r}: give an MLflow version number such as 3 "
            "or a semantic version such as 1.2.0"
        )
    return int(stripped)
