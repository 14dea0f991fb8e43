"""Read models the facade returns: frozen, JSON-ready, the same for CLI, API and dashboard."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from modelreg.domain import (
    Action,
    CompileDetails,
    DeliveryStatus,
    Event,
    LineageRecord,
    Outcome,
    ReloadOutcome,
    Stage,
)
from modelreg.policy import GateResult, Role


class View(BaseModel):
    """Base of every read model."""

    model_config = ConfigDict(frozen=True)

    def as_json(self) -> dict[str, Any]:
        """A JSON-compatible dict."""
        return self.model_dump(mode="json")


class VersionView(View):
    """One model version as modelreg sees it: MLflow facts plus governance facts."""

    name: str
    version: int
    semver: str | None
    stage: Stage
    aliases: list[str]
    digest: str | None
    run_id: str
    source: str
    description: str
    tags: dict[str, str]
    lineage_complete: bool | None
    lineage_missing: list[str]
    registered_at: datetime | None
    registered_by: str | None
    adopted: bool
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    # The lineage record (git, data, params, environment) on one-version reads (`show`);
    # None in listings and for versions not adopted yet.
    lineage: LineageRecord | None = None
    # The compiled form model servers verified and recorded (`show` only; None in listings
    # and while no server has compiled these artifacts).
    compiled: CompileDetails | None = None


class ModelView(View):
    """One registered model with its governed state."""

    name: str
    description: str
    versions: int  # recorded in the ledger; versions MLflow has not synced yet are not counted
    production: int | None
    production_semver: str | None
    staging: int | None
    latest_semver: str | None


class EventView(View):
    """One ledger event."""

    id: int
    model: str
    version: int
    action: Action
    actor: str
    at: datetime
    from_stage: Stage | None
    to_stage: Stage | None
    reason: str
    semver: str
    digest: str
    details: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventView:
        """Build from a domain event."""
        return cls.model_validate(event, from_attributes=True)


class HistoryView(View):
    """The ordered history of a model and the state at a point in time."""

    name: str
    at: datetime | None
    production: int | None
    production_semver: str | None
    stages: dict[int, Stage]
    events: list[EventView]


class LineageSource(enum.StrEnum):
    """Where a version's lineage record comes from."""

    MODELREG = "modelreg"  # captured by modelreg at registration (git, environment, data)
    MLFLOW = "mlflow"  # rebuilt from what MLflow shows (run params, tags, datasets)


class LineageView(View):
    """Lineage of one version and how complete it is."""

    name: str
    version: int
    semver: str | None
    run_id: str
    complete: bool
    missing: list[str]
    record: LineageRecord | None
    source: LineageSource


class VerifyResult(View):
    """Outcome of re-hashing one version's artifacts."""

    name: str
    version: int
    semver: str | None
    expected_digest: str | None
    actual_digest: str | None
    ok: bool
    problems: list[str]


class GateView(View):
    """One policy gate: what it required, what it observed, whether it passed."""

    gate: str
    passed: bool
    required: str
    observed: str

    @classmethod
    def of(cls, result: GateResult) -> GateView:
        """Build from a policy gate result."""
        return cls(
            gate=result.gate,
            passed=result.passed,
            required=result.required,
            observed=result.observed,
        )


class DecisionView(View):
    """The outcome of validate, request, approve, reject or auto-promote."""

    name: str
    version: int
    semver: str | None
    outcome: Outcome
    passed: bool
    promoted: bool
    gates: list[GateView]
    approvers: list[str]
    required_approvals: int
    policy: str
    message: str = ""
    events: list[EventView] = []


class PolicyView(View):
    """The effective policy for a model (or the default) and the caller's role."""

    source: str | None  # None: no policy file, the open policy applies
    model: str | None
    policy: dict[str, Any]
    actor: str
    role: Role


class DeliveryView(View):
    """One webhook delivery: which event, to whom, and how sending it went."""

    id: int
    subscriber: str
    outbox_id: int
    event_id: int
    model: str
    action: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str
    delivered_at: datetime | None
    created_at: datetime


class DriftKind(enum.StrEnum):
    """What ``doctor`` found different, per row."""

    UNADOPTED = "unadopted"  # a version in MLflow the ledger has not recorded (sync adopts it)
    ALIAS_PRODUCTION = "alias production"  # the production alias points elsewhere
    ALIAS_STAGING = "alias staging"  # the staging alias points elsewhere
    NATIVE_STAGE = "native stage"  # MLflow's deprecated stage field differs
    STAGE_TAG = "stage tag"  # the modelreg.stage tag differs
    DELETED = "deleted in MLflow"  # the ledger knows a version MLflow no longer has
    PROJECTION = "state projection"  # the ledger's own projection differs from its events
    UNMANAGEABLE_NAME = "unmanageable name"  # a model name modelreg cannot manage
    ERROR = "error"  # checking the model failed; doctor went on with the others


class Drift(View):
    """One difference between the ledger and what MLflow shows."""

    name: str
    version: int | None
    kind: DriftKind
    expected: str
    actual: str
    fixed: bool = False
    repairable: bool = True  # False: doctor --fix cannot repair it; ``note`` says what to do
    note: str = ""


class ArmView(View):
    """One variant of an experiment: its name, version, and share of traffic now."""

    variant: str
    version: int
    share: float


class ExperimentView(View):
    """One A/B experiment: arms, split, state, who started it, and its latest verdict.

    ``report`` (on ``ab status``) is the statistics report as JSON: per-variant
    counts and metrics, comparisons with confidence intervals, sample ratio
    mismatch, guardrails and the decision (see ``modelreg.experiments.report``).
    """

    id: str
    model: str
    state: str
    control: ArmView
    control_alias: str | None
    treatments: list[ArmView]
    traffic: float
    key_header: str
    shadow: bool
    metrics: list[str]
    guardrails: list[str]
    revision: int
    started_by: str
    started_at: datetime
    stopped_at: datetime | None
    concluded_at: datetime | None
    stop_reason: str
    verdict: dict[str, Any] | None
    report: dict[str, Any] | None = None
    events: list[EventView] = []


class RequestView(View):
    """One open promotion request: which version, who asked, when, why, who approved so far."""

    name: str
    version: int
    semver: str | None
    stage: Stage | None
    requester: str
    requested_at: datetime | None
    comment: str
    approvers: list[str]


class RequestPage(View):
    """One page of open requests, oldest first, and how many are open in all."""

    requests: list[RequestView]
    total: int
    offset: int
    limit: int


class VersionPage(View):
    """One page of a model's versions, newest first, with their run metrics and params."""

    versions: list[VersionView]
    total: int
    offset: int
    limit: int


class EventPage(View):
    """One page of ledger events, newest first, and how many match the filter in all."""

    events: list[EventView]
    total: int
    offset: int
    limit: int


class ModelCounts(View):
    """How many versions of one model are in each stage, and how many await approval."""

    stages: dict[Stage, int]
    open_requests: int


class ReplicaView(View):
    """What one serving replica last reported for one variant of an experiment."""

    experiment_id: str
    replica: str
    variant: str
    version: int
    requests: int
    errors: int
    updated_at: datetime


class ServedSlotView(View):
    """What one serving replica serves in one slot, as it last reported (``modelreg`` serve).

    ``since`` is when the version finished loading there; ``reported_at`` when
    the replica last reported (every few seconds while it runs);
    ``silent_seconds`` how long ago that was, once it is longer than a replica
    should stay quiet (None until then); ``reasons`` why the slot is degraded.
    """

    replica: str
    model: str
    variant: str
    alias: str | None
    version: int | None
    semver: str | None
    digest: str | None
    since: datetime | None
    reasons: list[str]
    reported_at: datetime
    silent_seconds: float | None = None  # set once it has not reported for a minute
    experiment: str | None = None  # the A/B experiment the replica routes by, and its
    experiment_revision: int | None = None  # revision (start, ramp, stop each add one)


class ExperimentRoutingView(View):
    """Which serving replicas follow one experiment as it is now, from their last reports.

    ``routed_by``: replicas that route by the experiment's current revision
    (start, ramp and stop each make one) with every treatment of a running
    experiment loaded, or, once it is concluded, no longer route by it;
    ``waiting``: replicas that reported the model within the last minute but
    not that yet (before a start they answer the model's users with the
    ``default`` variant, which the experiment neither counts nor takes
    feedback for). Silent replicas are in neither. Both are sorted replica names.
    """

    experiment: str
    model: str
    routed_by: list[str]
    waiting: list[str]


class ReloadView(View):
    """One replica's load of a version (``loaded``) or refusal of it (``refused``, with why)."""

    replica: str
    model: str
    variant: str
    version: int
    outcome: ReloadOutcome
    reason: str
    message: str
    at: datetime


class ReloadPage(View):
    """One page of serving reloads, newest first, and how many there are in all."""

    reloads: list[ReloadView]
    total: int
    offset: int
    limit: int
