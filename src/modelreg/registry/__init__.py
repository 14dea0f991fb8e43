"""The Registry facade: the one entry point for the CLI, the HTTP API and the dashboard.

MLflow holds models and artifacts; the ledger holds governance. ``Registry``
builds one service per concept and wires them by constructor injection; each
public method is a one-line delegation:

- :mod:`~modelreg.registry.access`: the actor rule, MLflow authentication, policy, roles;
- :mod:`~modelreg.registry.reads`: references, models, versions, search, history, lineage;
- :mod:`~modelreg.registry.lifecycle`: transitions, rollbacks and the one write path
  (plan from the event fold, project onto MLflow, append under the model's lock);
- :mod:`~modelreg.registry.adoption`: registering and adopting versions (semver, manifest);
- :mod:`~modelreg.registry.governance`: gates, requests, approvals, auto-promotion;
- :mod:`~modelreg.registry.experiments`: A/B experiments, their counts, feedback, guardrails;
- :mod:`~modelreg.registry.serving`: what serving replicas report (slots, reloads);
- :mod:`~modelreg.registry.artifacts`: download, hash once, verify against manifests;
- :mod:`~modelreg.registry.drift`: doctor, repair, reactions to MLflow webhooks;
- :mod:`~modelreg.registry.webhooks`: subscribers and the delivery log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.domain import CompileDetails, LineageRecord, ReplicaReport, ServingRecord, Stage
from modelreg.errors import BackendError, BackendUnavailableError
from modelreg.experiments.definition import (
    DEFAULT_KEY_HEADER,
    ExperimentRoute,
    Feedback,
    FeedbackResult,
    PredictionRecord,
    VariantCounts,
)
from modelreg.ledger import Ledger
from modelreg.ledger.deliveries import ReceivedDeliveries
from modelreg.ledger.overview import EventFilter
from modelreg.mlflow_gateway import MlflowGateway
from modelreg.policy import Permission, PolicyFile, Role
from modelreg.registry.access import SYSTEM, Access, Caller, Credentials
from modelreg.registry.adoption import Adoption, Skipped
from modelreg.registry.artifacts import Artifacts, Progress, no_progress
from modelreg.registry.drift import DELETED_KIND, DriftRepair
from modelreg.registry.experiments import Experiments
from modelreg.registry.governance import Governance
from modelreg.registry.ledger_check import LedgerCheck
from modelreg.registry.lifecycle import Lifecycle
from modelreg.registry.projection import DIGEST_TAG, LEDGER_TAG, SEMVER_TAG, STAGE_TAG
from modelreg.registry.reads import Reads
from modelreg.registry.serving import ServingReports
from modelreg.registry.webhooks import Webhooks
from modelreg.settings import Settings
from modelreg.views import (
    DecisionView,
    DeliveryView,
    Drift,
    EventPage,
    EventView,
    ExperimentRoutingView,
    ExperimentView,
    HistoryView,
    LineageView,
    ModelCounts,
    ModelView,
    PolicyView,
    ReloadPage,
    ReplicaView,
    RequestPage,
    ServedSlotView,
    VerifyResult,
    VersionPage,
    VersionView,
)
from modelreg.webhooks import Subscriber

if TYPE_CHECKING:
    from modelreg.experiments.timeline import Timeline  # scipy: imported where a timeline is built

__all__ = [
    "DELETED_KIND",
    "DIGEST_TAG",
    "LEDGER_TAG",
    "SEMVER_TAG",
    "STAGE_TAG",
    "SYSTEM",
    "Caller",
    "Credentials",
    "EventFilter",
    "Progress",
    "Registry",
    "Skipped",
]


class Registry:
    """Governed access to models in MLflow: register, promote, roll back, audit, repair."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        gateway: MlflowGateway | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.gateway = gateway or MlflowGateway(self.settings.resolved_tracking_uri())
        self.ledger = ledger or Ledger(self.settings.resolved_ledger_uri())
        settings, gateway, ledger = self.settings, self.gateway, self.ledger
        self.access = Access(settings, gateway)
        self.ledger_check = LedgerCheck(settings, gateway, ledger)
        self.reads = Reads(gateway, ledger, self.access, self.ledger_check)
        self.artifacts = Artifacts(settings, gateway, ledger, self.reads)
        self.adoption = Adoption(
            settings, gateway, ledger, self.access, self.ledger_check, self.artifacts
        )
        self.lifecycle = Lifecycle(
            gateway, ledger, self.access, self.reads, self.adoption, self.artifacts
        )
        self.governance = Governance(
            settings,
            gateway,
            ledger,
            self.access,
            self.reads,
            self.adoption,
            self.artifacts,
            self.lifecycle,
        )
        self.drift_repair = DriftRepair(
            gateway, ledger, self.access, self.ledger_check, self.adoption, self.lifecycle
        )
        self.webhooks = Webhooks(ledger, self.access)
        self.ab = Experiments(
            settings, gateway, ledger, self.access, self.reads, self.adoption, self.governance
        )
        self.serving = ServingReports(settings, ledger, self.access)

    @classmethod
    def connect(
        cls,
        tracking_uri: str,
        ledger_uri: str,
        *,
        actor: str | None = None,
        home: Path | None = None,
    ) -> Registry:
        """A registry for explicit URIs (what tests, benchmarks and notebooks use)."""
        fields: dict[str, Any] = {"tracking_uri": tracking_uri, "ledger_uri": ledger_uri}
        if actor:
            fields["actor"] = actor
        if home:
            fields["home"] = home
        return cls(Settings(**fields))

    def close(self) -> None:
        """Release database connections and the MLflow connection pool."""
        self.ledger.dispose()
        self.gateway.close()

    def health(self) -> dict[str, str]:
        """Reachability of MLflow and the ledger, for health endpoints.

        Each is asked now (MLflow lists one model, the ledger runs ``SELECT 1``);
        the value is ``"ok"`` or the error message.
        """
        status = {}
        for service, check in (("mlflow", self.gateway.ping), ("ledger", self.ledger.ping)):
            try:
                check()
                status[service] = "ok"
            except (BackendError, BackendUnavailableError) as exc:
                status[service] = exc.message
        return status

    # -- policy and access -------------------------------------------------------

    def actor(self) -> str:
        """Who this registry acts as when no actor is given (authenticated under MLflow auth)."""
        return self.access.actor()

    def caller(self, credentials: Credentials | None, claimed: str | None = None) -> str:
        """Who acts for a caller: the one rule of :mod:`~modelreg.registry.access`.

        Under MLflow auth the user MLflow authenticates from ``credentials``,
        otherwise ``claimed`` (``anonymous`` when None).
        """
        return self.access.caller(credentials, claimed)

    def policy(self) -> PolicyFile:
        """The governance policy, re-read when its file changes (open policy without one)."""
        return self.access.policy()

    def policy_view(self, name: str | None = None, *, actor: str | None = None) -> PolicyView:
        """The effective policy for ``name`` (the default without one) and ``actor``'s role."""
        return self.access.policy_view(name, actor=actor)

    def role_of(self, actor: str | None = None) -> Role:
        """The role the policy's [access] table gives ``actor``."""
        return self.access.role_of(actor)

    def init_policy(self, *, force: bool = False, actor: str | None = None) -> PolicyView:
        """Write the starter policy with ``actor`` as its admin (only admins replace a policy)."""
        return self.access.init_policy(force=force, actor=actor)

    def authorize(self, actor: str | None, needed: Permission, action: str) -> tuple[str, Role]:
        """Check that ``actor`` holds ``needed``; return the actor's name and role.

        The adapters authenticate (HTTP Basic against MLflow, or the configured
        actor in the embedded default); roles are enforced here either way.
        """
        return self.access.authorize(actor, needed, action)

    def authenticate(self, username: str, password: str) -> str:
        """Check ``username``/``password`` against MLflow's basic-auth app; return the user.

        A verified password is trusted for ``access.CREDENTIALS_TTL_SECONDS``.
        """
        return self.access.authenticate(username, password)

    # -- A/B experiments ---------------------------------------------------------

    def ab_start(
        self,
        name: str,
        treatments: Sequence[str | int],
        *,
        traffic: float,
        control: str | int = "production",
        key_header: str = DEFAULT_KEY_HEADER,
        shadow: bool = False,
        metrics: Sequence[str] = (),
        guardrails: Sequence[str] = (),
        reason: str = "",
        actor: str | None = None,
    ) -> ExperimentView:
        """Start an A/B experiment of ``treatments`` against ``control`` (``modelreg ab start``).

        ``traffic`` is each treatment's share in (0, 1]; metrics are
        accuracy, conversion, value, auc or error_rate (the first is primary);
        guardrails read like ``error_rate<0.05`` or ``p99_latency_ms<500``.
        """
        return self.ab.start(
            name,
            treatments,
            traffic=traffic,
            control=control,
            key_header=key_header,
            shadow=shadow,
            metrics=metrics,
            guardrails=guardrails,
            reason=reason,
            actor=actor,
        )

    def ab_status(self, name: str, *, actor: str | None = None) -> ExperimentView:
        """The model's current (or last) experiment with its statistics report."""
        return self.ab.status(name, actor=actor)

    def ab_ramp(
        self, name: str, traffic: float, *, reason: str = "", actor: str | None = None
    ) -> ExperimentView:
        """Change the running experiment's treatment share (treated keys stay treated)."""
        return self.ab.ramp(name, traffic, reason=reason, actor=actor)

    def ab_stop(self, name: str, *, reason: str = "", actor: str | None = None) -> ExperimentView:
        """Stop the running experiment: everyone gets control and counting ends."""
        return self.ab.stop(name, reason=reason, actor=actor)

    def ab_conclude(
        self, name: str, *, promote: bool = False, reason: str = "", actor: str | None = None
    ) -> ExperimentView:
        """Record the experiment's decision; ``promote`` requests the winner's promotion."""
        return self.ab.conclude(name, promote=promote, reason=reason, actor=actor)

    def ab_list(
        self, *, model: str | None = None, state: str | None = None, actor: str | None = None
    ) -> list[ExperimentView]:
        """Experiments, newest first (``modelreg ab list``)."""
        return self.ab.listed(model=model, state=state, actor=actor)

    def ab_timeline(self, name: str, *, points: int = 60, actor: str | None = None) -> Timeline:
        """The current (or last) experiment over time: per-variant series in <= ``points`` steps."""
        return self.ab.timeline(name, points=points, actor=actor)

    def ab_overview(
        self, name: str, *, points: int = 60, actor: str | None = None
    ) -> tuple[ExperimentView, Timeline]:
        """``ab_status`` and ``ab_timeline`` at once, reading the prediction log once."""
        return self.ab.overview(name, points=points, actor=actor)

    def guard_experiments(self) -> list[ExperimentView]:
        """The workers' round: stop breaching experiments; prune the logs and replica records."""
        stopped = self.ab.guard()
        self.serving.prune()
        return stopped

    def experiment(self, name: str) -> ExperimentRoute | None:
        """The route serving follows for ``name`` (its running or stopped experiment)."""
        return self.ab.experiment(name)

    def record_variant_counts(self, replica: str, counts: Sequence[VariantCounts]) -> None:
        """Store one serving replica's cumulative per-variant counts."""
        self.ab.record_variant_counts(replica, counts)

    def log_predictions(self, records: Sequence[PredictionRecord]) -> None:
        """Append predictions to the bounded prediction log."""
        self.ab.log_predictions(records)

    def record_feedback(self, feedback: Feedback) -> FeedbackResult:
        """Join an outcome to a logged prediction (404 unknown, 410 expired, 409 conflicting)."""
        return self.ab.record_feedback(feedback)

    # -- webhooks ----------------------------------------------------------------

    def subscribers(self) -> list[Subscriber]:
        """The policy's webhook subscribers with their secrets read from the environment."""
        return self.webhooks.subscribers()

    def deliveries(
        self, *, subscriber: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[DeliveryView]:
        """Webhook deliveries, newest first."""
        return self.webhooks.deliveries(subscriber=subscriber, status=status, limit=limit)

    def retry_delivery(self, delivery_id: int, *, actor: str | None = None) -> DeliveryView:
        """Send a failed webhook delivery again on the next round."""
        return self.webhooks.retry_delivery(delivery_id, actor=actor)

    def deliver_webhooks(self, *, actor: str | None = None) -> int:
        """Fan out new events and send every due delivery now; return the attempts made."""
        return self.webhooks.deliver_webhooks(actor=actor)

    def accept_mlflow_delivery(
        self, delivery_id: str, *, expires_at: datetime, now: datetime | None = None
    ) -> bool:
        """Record a received MLflow webhook delivery id; False when it was seen before.

        Replay protection across replicas: exactly one of them accepts an id.
        ``expires_at`` is when the request's signature stops being fresh; ids
        are forgotten after it (a replay is refused by the signature check then).
        """
        when = now or datetime.now(UTC)
        seen = ReceivedDeliveries(self.ledger)
        return seen.first_time(delivery_id, now=when, expires_at=expires_at)

    # -- governance --------------------------------------------------------------

    def validate(self, name: str, ref: str | int, *, actor: str | None = None) -> DecisionView:
        """Run every gate of the model's policy against a version."""
        return self.governance.validate(name, ref, actor=actor)

    def request(
        self,
        name: str,
        ref: str | int,
        *,
        stage: Stage | str = Stage.PRODUCTION,
        comment: str = "",
        actor: str | None = None,
    ) -> DecisionView:
        """Open a Production request for a version (promotes at once if no approval is needed)."""
        return self.governance.request(name, ref, stage=stage, comment=comment, actor=actor)

    def approve(
        self, name: str, ref: str | int, *, comment: str = "", actor: str | None = None
    ) -> DecisionView:
        """Approve a version's open request; promotes it when enough approvals count."""
        return self.governance.approve(name, ref, comment=comment, actor=actor)

    def reject(
        self, name: str, ref: str | int, *, comment: str, actor: str | None = None
    ) -> DecisionView:
        """Reject a version's open request with a comment."""
        return self.governance.reject(name, ref, comment=comment, actor=actor)

    def auto_promote(self, name: str, ref: str | int, *, actor: str | None = None) -> DecisionView:
        """Promote a version without a human when the policy allows it."""
        return self.governance.auto_promote(name, ref, actor=actor)

    # -- reads ---------------------------------------------------------------------

    def resolve(self, name: str, ref: str | int) -> int:
        """Turn a version number (``3``) or semver (``1.2.0``) into the MLflow version number."""
        return self.reads.resolve(name, ref)

    def models(self) -> list[ModelView]:
        """Every registered model with its Production and Staging versions."""
        return self.reads.models()

    def versions(self, name: str) -> list[VersionView]:
        """Every version of a model, oldest first."""
        return self.reads.versions(name)

    def versions_page(self, name: str, *, limit: int = 25, offset: int = 0) -> VersionPage:
        """One page of a model's versions, newest first, with run metrics and params.

        Raises ModelNotFoundError, or InvalidInputError for a limit outside
        1..500 or a negative offset.
        """
        return self.reads.versions_page(name, limit=limit, offset=offset)

    def audit(
        self, where: EventFilter | None = None, *, limit: int = 50, offset: int = 0
    ) -> EventPage:
        """Ledger events across models matching ``where``, newest first, one page.

        ``where`` filters by model, version, actor, action and time (inclusive);
        the page says how many events match in all. Raises InvalidInputError for
        a limit outside 1..500 or a negative offset.
        """
        return self.reads.audit(where or EventFilter(), limit=limit, offset=offset)

    def open_requests(
        self, model: str | None = None, *, limit: int = 50, offset: int = 0
    ) -> RequestPage:
        """Open promotion requests of ``model`` (or every model), oldest first, one page."""
        return self.reads.open_requests(model, limit=limit, offset=offset)

    def model_counts(self) -> dict[str, ModelCounts]:
        """Per model: how many versions are in each stage and how many await approval."""
        return self.reads.model_counts()

    def replica_reports(self, experiment_ids: Sequence[str]) -> list[ReplicaView]:
        """What each serving replica last reported per variant of these experiments."""
        return self.reads.replica_reports(experiment_ids)

    def record_replica(self, report: ReplicaReport) -> None:
        """Store a serving replica's report: the slots it serves now and its reloads since."""
        self.serving.record(report)

    def replicas(
        self, model: str | None = None, *, actor: str | None = None
    ) -> list[ServedSlotView]:
        """What every serving replica serves (of ``model``), as each last reported."""
        return self.serving.slots(model, actor=actor)

    def experiment_routing(
        self, view: ExperimentView, *, actor: str | None = None
    ) -> ExperimentRoutingView:
        """Which serving replicas route ``view``'s experiment, and which do not yet."""
        return self.serving.experiment_routing(view, actor=actor)

    def wait_for_routing(
        self, view: ExperimentView, seconds: float, *, actor: str | None = None
    ) -> ExperimentRoutingView:
        """Wait up to ``seconds`` until every live serving replica follows ``view``."""
        return self.serving.wait_for_routing(view, seconds, actor=actor)

    def reloads(
        self,
        model: str | None = None,
        *,
        limit: int = 25,
        offset: int = 0,
        actor: str | None = None,
    ) -> ReloadPage:
        """Serving replicas' reloads and refused loads (of ``model``), newest first, one page."""
        return self.serving.reloads(model, limit=limit, offset=offset, actor=actor)

    def show(self, name: str, ref: str | int) -> VersionView:
        """One version: semver, stage, digest, lineage status, params, metrics, compiled form."""
        view = self.reads.show(name, ref)
        if view.digest is None:
            return view
        compiled = self.serving.compiled(name, view.version, view.digest)
        return view.model_copy(update={"compiled": compiled})

    def search(self, filter_text: str) -> list[VersionView]:
        """Versions matching a filter over tags, params, metrics, stage, semver and more."""
        return self.reads.search(filter_text)

    def history(self, name: str, at: datetime | None = None) -> HistoryView:
        """The ordered event history and, with ``at``, the state at that moment."""
        return self.reads.history(name, at)

    def lineage(self, name: str, ref: str | int) -> LineageView:
        """Lineage of a version: what modelreg captured, or what MLflow lets us rebuild."""
        return self.reads.lineage(name, ref)

    # -- lifecycle -------------------------------------------------------------

    def promote(
        self,
        name: str,
        ref: str | int,
        stage: Stage | str,
        *,
        reason: str = "",
        actor: str | None = None,
    ) -> list[EventView]:
        """Move a version to ``stage``; promoting to Production archives the previous one.

        Production from None passes through Staging in the same operation (both
        moves are recorded), as the course's one-step ``transition`` expects.
        Under a policy, moving a version to Production directly is an admin's
        override: gates that fail are recorded with it (an OVERRIDE event), and
        the gates no one may override (changed artifacts, a required time in
        Staging) refuse it.
        """
        return self.lifecycle.transition(
            name, ref, stage, reason=reason, actor=actor, override=self.governance.override
        )

    def rollback(
        self, name: str, to: str | int | None = None, *, reason: str = "", actor: str | None = None
    ) -> list[EventView]:
        """Return Production to the previous Production version (or to ``to``).

        Under a policy that requires verified digests the target's artifacts are
        re-hashed first: a rollback never points Production at changed files
        (the refusal is recorded as a DECLINE and raises IntegrityError).
        """
        return self.lifecycle.rollback(name, to, reason=reason, actor=actor)

    # -- registration and adoption ----------------------------------------------

    def sync(
        self,
        name: str | None = None,
        progress: Progress = no_progress,
        *,
        actor: Caller = None,
        on_skip: Skipped | None = None,
    ) -> list[VersionView]:
        """Adopt versions registered by plain MLflow clients: semver, manifest, lineage record.

        The caller (``actor``, ``None`` for the configured actor) needs the
        contributor role; modelreg itself (the background sync, a webhook,
        adoption on demand) passes :data:`SYSTEM` and is not authorised.
        A version that cannot be adopted (a name modelreg cannot manage, artifacts
        missing from the store, an MLflow model file that does not parse) is
        skipped and reported to ``on_skip`` (and the log); the others are still
        adopted. Only an unreachable backend stops the round.
        """
        return self.adoption.sync(name, progress, actor=actor, on_skip=on_skip)

    def register(
        self,
        model: Any,
        *,
        name: str,
        training_data: Any = None,
        input_example: Any = None,
        signature: Any = None,
        params: Mapping[str, object] | None = None,
        data_version: str | None = None,
        semver: str | None = None,
        description: str = "",
        flavor: str | None = None,
        code_path: str | Path = ".",
        experiment: str | None = None,
        run_id: str | None = None,
        actor: str | None = None,
    ) -> VersionView:
        """Log ``model`` with its signature and complete lineage, and register a new version.

        Works inside an active MLflow run (or resumes ``run_id``, or starts one).
        The signature is required: pass one, or an ``input_example``/``training_data``
        to infer it from.
        """
        return self.adoption.register(
            model,
            name=name,
            training_data=training_data,
            input_example=input_example,
            signature=signature,
            params=params,
            data_version=data_version,
            semver=semver,
            description=description,
            flavor=flavor,
            code_path=code_path,
            experiment=experiment,
            run_id=run_id,
            actor=actor,
        )

    def register_uri(
        self,
        name: str,
        model_uri: str,
        *,
        semver: str | None = None,
        description: str = "",
        actor: str | None = None,
    ) -> VersionView:
        """Register an already logged model (``runs:/<run_id>/<path>``) with its run's lineage."""
        return self.adoption.register_uri(
            name, model_uri, semver=semver, description=description, actor=actor
        )

    def register_version(
        self,
        name: str,
        model_uri: str,
        run_id: str,
        *,
        lineage: LineageRecord,
        model_class: str,
        explicit_semver: str | None = None,
        description: str = "",
        actor: str | None = None,
    ) -> VersionView:
        """Register a logged model as a new version with semver, manifest and lineage.

        The explicit semver is checked before anything is created; if a later
        step fails, the MLflow version is deleted again.
        """
        return self.adoption.register_version(
            name,
            model_uri,
            run_id,
            lineage=lineage,
            model_class=model_class,
            explicit_semver=explicit_semver,
            description=description,
            actor=actor,
        )

    # -- integrity -------------------------------------------------------------

    def verify(
        self, name: str, ref: str | int | None = None, progress: Progress = no_progress
    ) -> list[VerifyResult]:
        """Re-hash artifacts and compare them with the manifests recorded at registration."""
        return self.artifacts.verify(name, ref, progress)

    # -- drift repair --------------------------------------------------------------

    def doctor(self, *, fix: bool = False, actor: str | None = None) -> list[Drift]:
        """Find (and with ``fix`` repair) differences between the ledger and MLflow.

        One model's trouble (a deleted version, a name modelreg cannot manage, an
        MLflow error) is reported as a drift of its own and the others are still
        checked; only an unreachable backend stops the run.
        """
        return self.drift_repair.doctor(fix=fix, actor=actor)

    def drift(self, name: str) -> list[Drift]:
        """Differences between the ledger and MLflow for one model (what doctor reports)."""
        return self.drift_repair.drift(name)

    def react_to_mlflow_change(self, name: str) -> tuple[list[VersionView], list[Drift]]:
        """What modelreg does when MLflow reports a change to ``name`` (a webhook).

        New versions are adopted. Under a policy, an alias or stage moved in
        MLflow behind the ledger's back is put back at once (a recorded repair),
        so governance cannot be bypassed through MLflow; without one the drift
        is only returned, for ``doctor --fix``. Drifts come back marked ``fixed``
        when they were repaired.
        """
        return self.drift_repair.react_to_mlflow_change(name)

    def repair(self, name: str) -> list[Drift]:
        """Put MLflow back to the ledger's state for one model, acting as modelreg itself.

        This is how the service answers an alias moved behind its back (an MLflow
        webhook): the repair is recorded like ``doctor --fix`` with the service's actor.
        """
        return self.drift_repair.repair(name)

    # -- serving support ---------------------------------------------------------

    def alias_version(self, name: str, alias: str) -> int:
        """The version ``alias`` points at now: one cheap MLflow call, what model servers poll.

        Under a policy, the aliases modelreg manages (``production``, ``staging``)
        are the ledger's: if MLflow's alias was moved behind modelreg's back, the
        ledger's holder is answered (and the bypass logged once), so a server never
        follows a version that did not pass the gates. The ledger is read only
        when MLflow's answer differs from the last one it confirmed.
        """
        return self.reads.alias_version(name, alias)

    def serving_record(self, name: str, version: int) -> ServingRecord:
        """Semver, digest and manifest of a version about to be served.

        A version registered by a plain MLflow client is adopted first (one
        ``sync``); one that still has no manifest is refused, because its
        artifacts could not be verified before loading.
        """
        return self.serving.with_compilation(self.adoption.serving_record(name, version))

    def record_compilation(
        self, record: ServingRecord, details: CompileDetails, artifact: bytes | None = None
    ) -> CompileDetails:
        """Record a model server's compiled form of a version and its verification (COMPILE).

        One event per artifacts, compiled artifact and outcome: the same
        verification repeated by every replica and reload is not appended
        again. A passed form's ``artifact`` is kept beside the version, among
        the artifacts of the run that logged it
        (``modelreg-compiled/<digest>/model.onnx``), so other replicas fetch it
        instead of converting again. Returns the details as recorded.
        """
        return self.serving.record_compilation(
            record, details, artifact, store=self.artifacts.store_compiled
        )

    def compiled_artifact(self, uri: str) -> bytes:
        """The bytes of a compiled artifact kept beside a version (a COMPILE's ``artifact_uri``)."""
        return self.artifacts.compiled(uri)

    def download(self, name: str, version: int, dst: Path) -> Path:
        """Download a version's artifacts under ``dst`` and return the model directory."""
        return self.artifacts.download(name, version, dst)
