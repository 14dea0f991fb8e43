"""Frozen value types shared by every layer: stages, actions, versions, events, lineage."""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from modelreg.errors import InvalidInputError, InvalidNameError, InvalidStageError, shorten
from modelreg.integrity import Manifest


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
    DELETE = "delete"  # the version was deleted in MLflow behind modelreg's back (doctor)
    OVERRIDE = "override"  # an admin promoted to Production although gates failed (listed)
    AB_START = "ab_start"  # an A/B experiment started (on its first treatment version)
    AB_RAMP = "ab_ramp"  # its treatments' traffic share changed
    AB_STOP = "ab_stop"  # stopped by a person: everyone back to control
    AB_AUTO_STOP = "ab_auto_stop"  # stopped by a breached guardrail
    AB_CONCLUDE = "ab_conclude"  # decided, with the evidence (and the promotion, if any)
    COMPILE = "compile"  # a model server compiled the version (ONNX) and verified it, or refused it


class DeliveryStatus(enum.StrEnum):
    """Where one webhook delivery stands; failed deliveries are kept, never deleted."""

    PENDING = "pending"  # waiting for its first or next attempt
    DELIVERED = "delivered"  # the subscriber answered 2xx
    FAILED = "failed"  # every attempt failed; `retry` puts it back to pending

    @classmethod
    def parse(cls, text: str) -> DeliveryStatus:
        """The status named by ``text``, or InvalidInputError listing the valid ones."""
        try:
            return cls(text)
        except ValueError:
            raise InvalidInputError(
                f"unknown delivery status {text[:40]!r}; "
                f"use one of: {', '.join(s.value for s in cls)}"
            ) from None


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


class EventDetails(BaseModel):
    """What an event records beyond who, when and which stage: one model per action.

    Stored as JSON in the event row and sent to webhook subscribers as is.
    Unknown keys are refused on append (a misspelt key is a bug, not data);
    events written by older versions are read leniently (:meth:`Event.typed`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    comment: str = ""  # a human's comment (requests, votes)
    triggered_by: str | None = None  # who set off the automation that acted


class EntryDetails(EventDetails):
    """REGISTER, ADOPT: where the version came from and how complete its lineage is."""

    lineage_missing: list[str] = []
    run_id: str = ""
    # Registered through modelreg under MLflow auth: the registrant is authenticated.
    registrant_verified: bool = False


class MoveDetails(EventDetails):
    """TRANSITION, AUTO_ARCHIVE, ROLLBACK: a stage change."""

    previous_version: int | None = None  # what a move to Production replaced
    approvers: list[str] = []  # the approvals that counted, for a governed promotion
    override: bool = False  # an admin promoted although gates failed (see the OVERRIDE event)


class RequestDetails(EventDetails):
    """REQUEST: a promotion request opened after the gates passed."""

    target: str = "Production"


class VoteDetails(EventDetails):
    """APPROVE, REJECT: a decision on the open request ``request`` (its event id)."""

    request: int | None = None  # None only in events written before requests were numbered
    role: str = "viewer"  # the voter's role then (policy.Role value)


class DeclineDetails(EventDetails):
    """DECLINE: what was refused (request, auto-promotion, rollback...) and why."""

    refused: str = ""
    failures: list[str] = []


class FailedGate(BaseModel):
    """One gate an override went past."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gate: str
    required: str
    observed: str


class OverrideDetails(EventDetails):
    """OVERRIDE: the gates an admin's direct promotion did not pass, and the policy file."""

    failed_gates: list[FailedGate] = []
    policy: str = ""


class RepairDetails(EventDetails):
    """REPAIR, DELETE: the drift doctor found (``Drift.as_json()`` rows)."""

    drift: list[dict[str, Any]] = []


class ExperimentDetails(EventDetails):
    """AB_*: which experiment, its split after the change, and the evidence for a decision."""

    experiment: str = ""
    control_version: int | None = None
    treatments: dict[str, int] = {}  # variant name -> version
    traffic: float | None = None  # each treatment's share after this change
    shadow: bool = False
    breaches: list[str] = []  # AB_AUTO_STOP: the guardrails breached
    decision: str = ""  # AB_CONCLUDE: the report's decision and winner
    winner: str | None = None
    promoted: int | None = None  # AB_CONCLUDE --promote: the version promoted (or requested)
    evidence: dict[str, Any] = {}  # AB_CONCLUDE, AB_AUTO_STOP: the report behind the decision


class CompileDetails(EventDetails):
    """COMPILE: a compiled form of the version and how its verification went.

    ``compiled_digest`` is the sha256 of the compiled artifact; ``rows`` how
    many rows the original and the compiled model scored side by side,
    ``max_abs_diff`` the largest absolute difference of their probabilities
    (classifiers) or values (regressors), ``classes_identical`` whether every
    row got the same prediction. ``passed`` is False when the compiled form
    was refused; ``refused`` then says why. ``converters`` maps each package
    used (skl2onnx, onnx, onnxruntime ...) to its version.
    """

    runtime: str = "onnxruntime"
    compiled_digest: str = ""
    kind: str = ""  # "classifier" or "regressor"
    predict_fn: str = ""  # the pyfunc's function it reproduces: "predict" or "predict_proba"
    passed: bool = False
    rows: int = 0
    max_abs_diff: float | None = None
    tolerance: float = 1e-5
    classes_identical: bool | None = None
    model_type: str = ""
    converters: dict[str, str] = {}
    refused: str = ""
    replica: str = ""  # the model server that compiled it (host/uuid)
    # Where the compiled artifact is kept beside the version (``runs:/<run>/modelreg-compiled/
    # <digest>/model.onnx``); empty when it could not be stored (the server keeps its own copy).
    artifact_uri: str = ""


DETAILS: dict[Action, type[EventDetails]] = {
    Action.REGISTER: EntryDetails,
    Action.ADOPT: EntryDetails,
    Action.TRANSITION: MoveDetails,
    Action.AUTO_ARCHIVE: MoveDetails,
    Action.ROLLBACK: MoveDetails,
    Action.REPAIR: RepairDetails,
    Action.DELETE: RepairDetails,
    Action.REQUEST: RequestDetails,
    Action.APPROVE: VoteDetails,
    Action.REJECT: VoteDetails,
    Action.DECLINE: DeclineDetails,
    Action.OVERRIDE: OverrideDetails,
    Action.AB_START: ExperimentDetails,
    Action.AB_RAMP: ExperimentDetails,
    Action.AB_STOP: ExperimentDetails,
    Action.AB_AUTO_STOP: ExperimentDetails,
    Action.AB_CONCLUDE: ExperimentDetails,
    Action.COMPILE: CompileDetails,
}


def validation_problem(error: Mapping[str, Any], prefix: Sequence[str | int] = ()) -> str:
    """One pydantic error as ``where: what`` (``where`` dotted, e.g. ``models.churn.gates``).

    ``error`` is one item of ``ValidationError.errors()``; ``prefix`` is prepended
    to its location (the key the validated value came from).
    """
    where = ".".join(str(part) for part in (*prefix, *error["loc"])) or "(top level)"
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event about to be appended; the ledger assigns its id and time.

    ``details`` may be given as the action's :class:`EventDetails` model or as
    its JSON form; it is checked against the action's model either way and
    kept as JSON (what the ledger stores and webhooks send). Raises
    pydantic's ValidationError for a key or type the action does not have.
    """

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

    def __post_init__(self) -> None:
        given: Any = self.details
        kind = DETAILS[self.action]
        typed = given if isinstance(given, EventDetails) else kind.model_validate(given)
        object.__setattr__(self, "details", typed.model_dump(mode="json", exclude_unset=True))

    def typed(self) -> EventDetails:
        """The details as the action's model (keys written by older versions are ignored)."""
        kind = DETAILS[self.action]
        known = {k: v for k, v in self.details.items() if k in kind.model_fields}
        return kind.model_validate(known)


@dataclass(frozen=True, kw_only=True)
class Event(NewEvent):
    """One append-only ledger entry; the current state is a fold over these."""

    id: int
    at: datetime

    def __post_init__(self) -> None:
        # Read back as stored: rows from older versions may carry other keys.
        pass


CompileMode = Literal["auto", "require", "off"]
"""Whether a version is served by a verified compiled form: when possible, always, or never."""


@dataclass(frozen=True)
class ServingRecord:
    """What a model server needs to load one version: its semver, digest and manifest.

    The download is verified against ``manifest`` (file paths and SHA-256s)
    before anything is loaded; ``digest`` is the manifest's own SHA-256.
    """

    name: str
    version: int
    semver: str
    digest: str
    manifest: Manifest
    # How the policy wants the version served: "auto" (a verified compiled form when one
    # can be made), "require" (refuse a version without one) or "off"; and the largest
    # absolute difference verification accepts.
    compile: CompileMode = "auto"
    compile_tolerance: float = 1e-5
    # The last compiled form recorded for these artifacts (a passed COMPILE event).
    compiled: CompileDetails | None = None


@dataclass(frozen=True)
class ServedSlot:
    """What one serving replica serves in one slot (a model's variant), as it reports it.

    ``version`` and ``semver`` are None while nothing is loaded; ``since`` is
    when the current version finished loading (aware UTC); ``reasons`` say
    why the slot is degraded (empty when it serves what the registry asks).
    ``experiment`` and ``experiment_revision`` are the A/B experiment (id and
    revision: start, ramp and stop each make a new one) the replica routes
    the model's requests by, once its router switched to it; None outside one.
    """

    model: str
    variant: str
    alias: str | None
    version: int | None
    semver: str | None
    digest: str | None
    since: datetime | None
    reasons: tuple[str, ...] = ()
    experiment: str | None = None
    experiment_revision: int | None = None


class ReloadOutcome(enum.StrEnum):
    """How a replica's attempt to serve a version ended."""

    LOADED = "loaded"
    REFUSED = "refused"  # download, verification, load or warm-up failed; the old one serves


@dataclass(frozen=True)
class ReloadEvent:
    """One replica's load of a version of a slot, or its refusal (``reason``: the failure kind)."""

    model: str
    variant: str
    version: int
    outcome: ReloadOutcome
    reason: str
    message: str
    at: datetime


@dataclass(frozen=True)
class ReplicaReport:
    """What one serving replica reports each round: its slots now and its reloads since."""

    replica: str
    slots: tuple[ServedSlot, ...]
    reloads: tuple[ReloadEvent, ...] = ()


@dataclass(frozen=True)
class StageChange:
    """One version's move from one stage to another, planned by the lifecycle."""

    version: int
    from_stage: Stage
    to_stage: Stage
    action: Action


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


GitSource = Literal["captured", "mlflow", "declared"]
"""Where a git record came from: modelreg read the checkout at registration
(``captured``), MLflow's ``mlflow.source.git.*`` run tags (``mlflow``), or run
params/tags the training code logged itself (``declared``)."""


class GitInfo(_Frozen):
    """Where the training code came from."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = False  # None: not known (MLflow's tags and run params do not say)
    diff_sha256: str | None = None
    remote: str | None = None
    source: GitSource = "captured"


class DataKind(enum.StrEnum):
    """What a training data input was, and so what its ``sha256`` means."""

    PANDAS = "pandas"
    NUMPY = "numpy"
    FILE = "file"
    DIRECTORY = "directory"
    DVC = "dvc"  # an output listed in dvc.lock; sha256 is DVC's own hash of it
    MLFLOW_DATASET = "mlflow-dataset"  # MLflow's digest, which may sample the data
    DECLARED = "declared"  # only a version label; no hash


FINGERPRINT_KINDS = frozenset(
    {DataKind.PANDAS, DataKind.NUMPY, DataKind.FILE, DataKind.DIRECTORY, DataKind.DVC}
)
"""Data kinds whose ``sha256`` is a content hash of the whole input."""


class DataFingerprint(_Frozen):
    """One training data input: fingerprinted by content, or declared by a label.

    ``kind`` is one of :data:`FINGERPRINT_KINDS` (``sha256`` hashes the content),
    ``mlflow-dataset`` (a dataset logged to the run; ``sha256`` holds MLflow's
    digest, which may sample the data) or ``declared`` (only a version label such
    as the ``data_version`` param; ``sha256`` is None).
    """

    name: str
    kind: DataKind
    sha256: str | None = None
    version: str | None = None
    rows: int | None = None
    columns: list[str] | None = None
    source: str | None = None

    @property
    def fingerprinted(self) -> bool:
        """Whether the content itself was hashed (not only named or sampled)."""
        return self.kind in FINGERPRINT_KINDS and bool(self.sha256)


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

    schema_version: int = 2  # 2: declared git/data lineage (GitInfo.source, kind "declared")
    run_id: str | None = None
    git: GitInfo | None = None
    data: list[DataFingerprint] = []
    params: dict[str, str] = {}
    environment: EnvironmentInfo | None = None
    captured_at: str | None = None

    @property
    def data_fingerprinted(self) -> bool:
        """Whether some training input is fingerprinted by content, not only declared."""
        return any(item.fingerprinted for item in self.data)

    def missing(self) -> list[str]:
        """Name the parts of complete lineage that this record lacks.

        Declared lineage counts: a git commit logged as a run param, a data
        version label. Whether data is fingerprinted is :attr:`data_fingerprinted`.
        """
        gaps = []
        if self.git is None or not self.git.commit:
            gaps.append("git commit")
        if not self.data:
            gaps.append("training data")
        if not self.params:
            gaps.append("hyperparameters")
        if self.environment is None:
            gaps.append("environment")
        return gaps


MAX_NAME_LENGTH = 256
"""Longest model name modelreg manages (MLflow's SQL stores keep 256 characters)."""


def name_problem(name: str) -> str | None:
    """Why modelreg cannot manage a model called ``name``, or None when it can.

    The one naming rule: what MLflow accepts (no ``/`` or ``:``, not ``.``/``..``
    path segments; MLflow 3.17 ``utils/validation.py``), minus what would make a
    name ambiguous or unsafe where modelreg puts it: control characters,
    backslashes and surrounding whitespace. Spaces, quotes and non-ASCII letters
    are fine; adapters URL-encode names and MLflow filters quote them.
    """
    if not name or not name.strip():
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    if name != name.strip():
        return "it starts or ends with whitespace"
    bad = sorted({ch for ch in name if ch in _FORBIDDEN or unicodedata.category(ch)[0] == "C"})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad[:5])
        return f"it contains characters that are not allowed ({shown})"
    if ".." in name:
        return "it contains '..'"
    if name == ".":
        return "'.' is a path segment, not a name"  # MLflow refuses it too (path_not_unique)
    return None


_FORBIDDEN = frozenset("/:\\")


def check_model_name(name: str) -> str:
    """Return ``name`` if modelreg can manage it (:func:`name_problem`), else InvalidNameError."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidNameError(name, problem)
    return name


MAX_VERSION_NUMBER = 2**31 - 1
"""Highest MLflow version number modelreg takes: the ledger keeps version numbers
(and semver components) in 32-bit INTEGER columns, PostgreSQL's ``integer``."""

MAX_LEDGER_ID = 2**63 - 1
"""Highest ledger row id (events, deliveries): a 64-bit BIGINT, SQLite's INTEGER."""

_VERSION_NUMBER = re.compile(r"[0-9]{1,10}")


def parse_version_number(text: str) -> int:
    """Parse an MLflow version number given as text (``"3"``) or raise InvalidInputError.

    Only ASCII digits count: ``str.isdigit`` also accepts superscripts (U+00B2), which
    ``int()`` refuses, and other scripts' digits. Surrounding whitespace is trimmed.
    """
    stripped = text.strip()
    if not _VERSION_NUMBER.fullmatch(stripped) or not 1 <= int(stripped) <= MAX_VERSION_NUMBER:
        shown = shorten(text, 40)
        raise InvalidInputError(
            f"invalid version {shown!r}: give an MLflow version number from 1 to "
            f"{MAX_VERSION_NUMBER} such as 3 or a semantic version such as 1.2.0"
        )
    return int(stripped)
