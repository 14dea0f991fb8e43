"""The Registry facade: the one entry point for the CLI, the HTTP API and the dashboard.

MLflow holds models and artifacts; the ledger holds governance. Every state
change happens under the model's ledger lock: plan it from the event fold,
project it onto MLflow (aliases, stage tags, the deprecated native stage),
then append the events. If MLflow refuses half-way the projection is undone
and the ledger transaction rolls back, so a failed change leaves no trace.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelreg import lifecycle, policy, registration, search, semver
from modelreg.domain import (
    Action,
    Event,
    LineageRecord,
    SemVer,
    ServingRecord,
    Stage,
    StageChange,
    check_model_name,
    parse_version_number,
)
from modelreg.errors import (
    ArtifactsNotFoundError,
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    InvalidNameError,
    InvalidSemVerError,
    LedgerMismatchError,
    ModelNotReadyError,
    ModelregError,
    PermissionDeniedError,
    PolicyError,
    VersionNotFoundError,
)
from modelreg.governance import Governance
from modelreg.integrity import Manifest, build_manifest, verify
from modelreg.ledger import Ledger, LedgerTransaction, NewEvent, VersionRecord
from modelreg.ledger.deliveries import DeliveryStatus, DeliveryStore
from modelreg.lineage import record_from_json, record_to_json
from modelreg.mlflow_gateway import (
    PRODUCTION_ALIAS,
    STAGING_ALIAS,
    MlflowGateway,
    RunInfo,
    VersionInfo,
    filter_literal,
    read_mlmodel,
    temporary_dir,
)
from modelreg.policy import Permission, PolicyFile, Role
from modelreg.registration import adopted_lineage, facts_from, facts_from_json, facts_to_json
from modelreg.search import Query
from modelreg.settings import Settings
from modelreg.views import (
    DecisionView,
    DeliveryView,
    Drift,
    EventView,
    HistoryView,
    LineageView,
    ModelView,
    PolicyView,
    VerifyResult,
    VersionView,
)
from modelreg.webhooks import Dispatcher, Subscriber

log = logging.getLogger("modelreg.registry")

STAGE_TAG = "modelreg.stage"
SEMVER_TAG = "modelreg.semver"
DIGEST_TAG = "modelreg.digest"
LEDGER_TAG = "modelreg.ledger"  # which ledger adopted a version (no credentials)
_MAX_REASON = 2000
_FEW = 50  # up to this many versions are fetched one by one rather than listed

Progress = Callable[[str, int, int], None]
Skipped = Callable[[VersionInfo, ModelregError], None]
"""Told about each version sync could not adopt, and why."""


def _no_progress(_label: str, _done: int, _total: int) -> None:
    return None


def _reason(text: str) -> str:
    if len(text) > _MAX_REASON:
        raise InvalidInputError(
            f"reason is {len(text)} characters long; keep it under {_MAX_REASON}"
        )
    return text


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
        self.governance = Governance(self)
        self._policy: tuple[tuple[int, int] | None, PolicyFile] | None = None
        self._ledger_checked = False
        self._authenticated: tuple[str, bool] | None = None
        # (model, alias) -> the version MLflow and the ledger last agreed on, and the
        # version a bypass was last logged for (alias_version is polled every second).
        self._confirmed: dict[tuple[str, str], int] = {}
        self._bypass_logged: dict[tuple[str, str], int] = {}

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

    def _actor(self, actor: str | None) -> str:
        """Who acts: ``actor``, else the configured actor; authenticated with MLflow auth.

        With ``auth = "mlflow"`` this registry first proves who *it* is: the
        configured user (MODELREG_USERNAME/PASSWORD), else the MLflow client's
        (MLFLOW_TRACKING_USERNAME/PASSWORD, modelreg's service account). It then
        acts as that user; only an MLflow admin (the service, which authenticated
        its callers itself) may act for someone else. A Python ``Registry`` with a
        wrong password therefore does nothing, and cannot claim another name.
        """
        if self.settings.auth == "mlflow":
            me, admin = self._identity()
            if actor is None or actor == me:
                return me
            if not admin:
                raise AuthenticationError(
                    f"{me} is authenticated with MLflow and cannot act as {actor[:60]!r}; "
                    "only modelreg's service account (an MLflow admin) acts for others"
                )
        chosen = (actor or self.settings.actor).strip()
        if not chosen or len(chosen) > 256:
            raise InvalidInputError("actor must be 1 to 256 characters")
        return chosen

    def actor(self) -> str:
        """Who this registry acts as when no actor is given (authenticated under MLflow auth)."""
        return self._actor(None)

    def _identity(self) -> tuple[str, bool]:
        """The MLflow user this registry authenticated as, and whether it is an admin."""
        if self._authenticated is None:
            username = self.settings.username or os.environ.get("MLFLOW_TRACKING_USERNAME", "")
            password = self.settings.password or os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
            if not username or not password:
                raise AuthenticationError(
                    "MODELREG_AUTH=mlflow needs credentials: set MODELREG_USERNAME and "
                    "MODELREG_PASSWORD (or MLflow's MLFLOW_TRACKING_USERNAME/PASSWORD)"
                )
            found = self.gateway.current_user(username, password)
            if found is None:
                raise AuthenticationError(
                    f"MLflow refused the credentials of {username[:60]!r}; check user and password"
                )
            self._authenticated = found
        return self._authenticated

    def _check_ledger(self) -> None:
        """Refuse a ledger that is not the one that adopted MLflow's versions.

        Running from another directory used to open another (often empty)
        ledger silently: versions looked unadopted, stages wrong, and a sync or
        ``doctor --fix`` forked the audit history or rewrote MLflow. One MLflow
        call per registry: a version modelreg adopted is looked up in this ledger;
        if it is unknown here, and the ledger its ``modelreg.ledger`` tag names is
        another one that exists (a moved or restored home is not held against
        anyone), this ledger is refused, naming the right one.
        """
        if self._ledger_checked or self.settings.allow_new_ledger:
            return
        adopted = self.gateway.any_version_tagged(DIGEST_TAG)
        if adopted is not None:
            # An absent SQLite ledger is empty without being created by the question.
            empty = self.ledger.is_empty()
            record = None if empty else self.ledger.version_record(adopted.name, adopted.version)
            known = record is not None and record.digest == adopted.tags.get(DIGEST_TAG)
            other = adopted.tags.get(LEDGER_TAG, "")
            ours = self.ledger.location()
            elsewhere = bool(other) and other != ours and _ledger_exists(other)
            if not known and (empty or elsewhere):
                raise LedgerMismatchError(
                    ours, self.gateway.tracking_uri, other or "another modelreg home"
                )
        self._ledger_checked = True

    # -- policy and access -------------------------------------------------------

    def policy(self) -> PolicyFile:
        """The governance policy, re-read when its file changes (open policy without one)."""
        path = self.settings.resolved_policy_file()
        try:
            stat = path.stat()
            key: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = None
        except OSError as exc:
            raise PolicyError(str(path), f"cannot be read: {exc}") from exc
        if self._policy is None or self._policy[0] != key:
            self._policy = (key, policy.load(path))
        return self._policy[1]

    def subscribers(self) -> list[Subscriber]:
        """The policy's webhook subscribers with their secrets read from the environment."""
        found = []
        for hook in self.policy().webhooks:
            secret = os.environ.get(hook.secret_env, "")
            if not secret:
                # Its events wait in the outbox until the secret is set; others go on.
                log.warning(
                    "webhook %s is paused: environment variable %s is not set",
                    hook.name,
                    hook.secret_env,
                )
                continue
            found.append(
                Subscriber(
                    hook.name,
                    hook.url,
                    secret.encode(),
                    frozenset(hook.actions),
                    allow_private=hook.allow_private,
                )
            )
        return found

    def deliveries(
        self, *, subscriber: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[DeliveryView]:
        """Webhook deliveries, newest first."""
        # The log is read from the ledger; no sender (and no HTTP pool) is needed.
        found = DeliveryStore(self.ledger).deliveries(
            subscriber=subscriber,
            status=DeliveryStatus.parse(status) if status is not None else None,
            limit=limit,
        )
        return [DeliveryView.model_validate(d, from_attributes=True) for d in found]

    def retry_delivery(self, delivery_id: int, *, actor: str | None = None) -> DeliveryView:
        """Send a failed webhook delivery again on the next round."""
        self.authorize(actor, Permission.ADMINISTER, "retry webhook deliveries")
        delivery = DeliveryStore(self.ledger).retry(delivery_id, now=datetime.now(UTC))
        return DeliveryView.model_validate(delivery, from_attributes=True)

    def deliver_webhooks(self, *, actor: str | None = None) -> int:
        """Fan out new events and send every due delivery now; return the attempts made."""
        self.authorize(actor, Permission.ADMINISTER, "send webhook deliveries")
        with Dispatcher(self.ledger, self.subscribers()) as dispatcher:
            return dispatcher.run_once()

    def policy_view(self, name: str | None = None, *, actor: str | None = None) -> PolicyView:
        """The effective policy for ``name`` (the default without one) and ``actor``'s role."""
        loaded = self.policy()
        if name is not None:
            check_model_name(name)
        who = self._actor(actor)
        return PolicyView(
            source=loaded.source or None,
            model=name,
            policy=(loaded.for_model(name) if name else loaded.default).model_dump(mode="json"),
            actor=who,
            role=loaded.access.role_of(who).value,
        )

    def role_of(self, actor: str | None = None) -> Role:
        """The role the policy's [access] table gives ``actor``."""
        return self.policy().access.role_of(self._actor(actor))

    def authorize(self, actor: str | None, needed: Permission, action: str) -> tuple[str, Role]:
        """Check that ``actor`` holds ``needed``; return the actor's name and role.

        The adapters authenticate (HTTP Basic against MLflow, or the configured
        actor in the embedded default); roles are enforced here either way.
        """
        who = self._actor(actor)
        role = self.policy().access.role_of(who)
        if role.rank < needed.minimum.rank:
            raise PermissionDeniedError(
                who, action, f"that needs the {needed.minimum.value} role and you are {role.value}"
            )
        return who, role

    def authenticate(self, username: str, password: str) -> str:
        """Check ``username``/``password`` against MLflow's basic-auth app; return the user."""
        if not username or not password:
            raise AuthenticationError("give a username and password (MLflow basic-auth)")
        found = self.gateway.current_user(username, password)
        if found is None:
            raise AuthenticationError(
                f"MLflow refused the credentials of {username[:60]!r}; check user and password"
            )
        return found[0]

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
        target = stage if isinstance(stage, Stage) else Stage.parse(stage)
        return self.governance.request(name, ref, stage=target, comment=comment, actor=actor)

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

    # -- resolving references ----------------------------------------------

    def resolve(self, name: str, ref: str | int) -> int:
        """Turn a version number (``3``) or semver (``1.2.0``) into the MLflow version number."""
        return self._resolve_info(name, ref).version

    def _resolve_info(self, name: str, ref: str | int) -> VersionInfo:
        """MLflow's record of the version ``ref`` names, fetched once for callers that need it."""
        check_model_name(name)
        if isinstance(ref, int) or "." not in str(ref):
            number = ref if isinstance(ref, int) else parse_version_number(ref)
            return self.gateway.version(name, number)
        wanted = semver.parse(str(ref))
        record = self.ledger.version_by_semver(name, wanted)
        if record is not None and (not wanted.build or record.semver_value.build == wanted.build):
            return self.gateway.version(name, record.version)
        self.gateway.model(name)
        raise VersionNotFoundError(name, str(ref))

    # -- reads ---------------------------------------------------------------

    def models(self) -> list[ModelView]:
        """Every registered model with its Production and Staging versions."""
        self._check_ledger()
        records: dict[str, list[VersionRecord]] = {}
        for record in self.ledger.version_records():
            records.setdefault(record.model, []).append(record)
        events: dict[str, list[Event]] = {}
        for event in self.ledger.events():
            events.setdefault(event.model, []).append(event)
        views = []
        for info in self.gateway.models():
            own = events.get(info.name, [])
            state = lifecycle.fold(own)
            production = lifecycle.holder(state, Stage.PRODUCTION)
            by_version = {r.version: r for r in records.get(info.name, [])}
            latest = max((r.semver_value for r in by_version.values()), default=None)
            views.append(
                ModelView(
                    name=info.name,
                    description=info.description,
                    versions=len(self.gateway.versions(info.name)),
                    production=production,
                    production_semver=by_version[production].semver
                    if production in by_version
                    else None,
                    staging=lifecycle.staging_holder(own),
                    latest_semver=str(latest) if latest else None,
                )
            )
        return views

    def versions(self, name: str) -> list[VersionView]:
        """Every version of a model, oldest first."""
        check_model_name(name)
        self._check_ledger()
        self.gateway.model(name)
        return self._views(self.gateway.versions(name), with_run=False)

    def show(self, name: str, ref: str | int) -> VersionView:
        """One version with its semver, stage, digest, lineage status, params and metrics."""
        return self._views([self._resolve_info(name, ref)], with_run=True)[0]

    def _views(self, infos: Sequence[VersionInfo], *, with_run: bool) -> list[VersionView]:
        self._check_ledger()
        if len(infos) == 1:
            # One version's stage folds from its own events; reading the whole
            # model's history made `show` O(versions).
            only = infos[0]
            record = self.ledger.version_record(only.name, only.version)
            state = lifecycle.fold(self.ledger.events(only.name, version=only.version))
            run = self.gateway.run(only.run_id) if with_run else None
            return [self._view(only, record, state, run)]
        names = {info.name for info in infos}
        records = {
            (r.model, r.version): r for model in names for r in self.ledger.version_records(model)
        }
        states = {model: lifecycle.fold(self.ledger.events(model)) for model in names}
        views = []
        for info in infos:
            record = records.get((info.name, info.version))
            run = self.gateway.run(info.run_id) if with_run else None
            views.append(self._view(info, record, states[info.name], run))
        return views

    @staticmethod
    def _view(
        info: VersionInfo,
        record: VersionRecord | None,
        state: Mapping[int, Stage],
        run: RunInfo | None,
    ) -> VersionView:
        return VersionView(
            name=info.name,
            version=info.version,
            semver=record.semver if record else None,
            stage=state.get(info.version, Stage.NONE),
            aliases=sorted(info.aliases),
            digest=record.digest if record else None,
            run_id=info.run_id,
            source=info.source,
            description=info.description,
            tags=info.tags,
            lineage_complete=record.lineage_complete if record else None,
            lineage_missing=[m for m in (record.lineage_missing if record else "").split(",") if m],
            registered_at=record.registered_at if record else None,
            registered_by=record.registered_by if record else None,
            adopted=record is not None,
            metrics=run.metrics if run else {},
            params=run.params if run else {},
            lineage=_lineage_of(record, run),
        )

    def search(self, filter_text: str) -> list[VersionView]:
        """Versions matching a filter over tags, params, metrics, stage, semver and more."""
        query = search.parse(filter_text)
        self._check_ledger()
        # MLflow's version search answers tag and name clauses itself.
        pushed = query.by_namespace("tags") + [
            c for c in query.by_namespace("") if c.key == "name" and c.op in {"=", "like", "ilike"}
        ]
        mlflow_filter = " and ".join(c.mlflow_text(filter_literal) for c in pushed)
        infos = self._stage_candidates(query) if not query.by_namespace("tags") else None
        if infos is None:
            infos = self.gateway.versions(filter_string=mlflow_filter or None)
        run_clauses = query.by_namespace("params") + query.by_namespace("metrics")
        if run_clauses:
            run_ids = self.gateway.search_run_ids(
                " and ".join(c.mlflow_text(filter_literal) for c in run_clauses)
            )
            infos = [info for info in infos if info.run_id in run_ids]
        builtin = query.by_namespace("")
        # Ledger rows only for the models MLflow returned, not the whole ledger.
        names = sorted({info.name for info in infos})
        records = {(r.model, r.version): r for m in names for r in self.ledger.version_records(m)}
        states = {m: lifecycle.fold(self.ledger.events(m)) for m in names}
        found = []
        for info in infos:
            record = records.get((info.name, info.version))
            candidate = search.Candidate(
                name=info.name,
                version=info.version,
                stage=states.get(info.name, {}).get(info.version, Stage.NONE),
                semver=record.semver_value if record else None,
                run_id=info.run_id,
                lineage_complete=bool(record and record.lineage_complete),
            )
            if all(search.matches(clause, candidate) for clause in builtin):
                found.append(self._view(info, record, states.get(info.name, {}), None))
        return found

    def _stage_candidates(self, query: Query) -> list[VersionInfo] | None:
        """For ``stage = S`` filters, the few versions the ledger says are in S.

        Listing every version from MLflow took 4.7 s at 10k versions to find
        the one in Production; the ledger knows it. Returns None (list from
        MLflow instead) when there is no such clause or too many candidates.
        """
        wanted = {
            Stage.parse(c.value) for c in query.by_namespace("") if c.key == "stage" and c.op == "="
        }
        if len(wanted) != 1:
            return None
        by_model: dict[str, list[Event]] = {}
        for event in self.ledger.events():
            by_model.setdefault(event.model, []).append(event)
        found = [
            (model, version)
            for model, events in by_model.items()
            for version, stage in lifecycle.fold(events).items()
            if stage in wanted
        ]
        if len(found) > _FEW:
            return None
        return [self.gateway.version(model, version) for model, version in sorted(found)]

    def history(self, name: str, at: datetime | None = None) -> HistoryView:
        """The ordered event history and, with ``at``, the state at that moment."""
        check_model_name(name)
        self._check_ledger()
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        events = self.ledger.events(name, until=at)
        if not events:
            self.gateway.model(name)  # tell "unknown model" from "no history yet"
        state = lifecycle.fold(events)
        production = lifecycle.holder(state, Stage.PRODUCTION)
        record = self.ledger.version_record(name, production) if production else None
        return HistoryView(
            name=name,
            at=at,
            production=production,
            production_semver=record.semver if record else None,
            stages=dict(state),
            events=[EventView.of(e) for e in events],
        )

    def lineage(self, name: str, ref: str | int) -> LineageView:
        """Lineage of a version: what modelreg captured, or what MLflow lets us rebuild."""
        info = self._resolve_info(name, ref)
        number = info.version
        record = self.ledger.version_record(name, number)
        lineage: LineageRecord | None
        if record is not None and record.lineage:
            lineage = record_from_json(record.lineage)
        else:
            lineage = self.gateway.run_lineage(info.run_id) if info.run_id else None
            if lineage is None and (run := self.gateway.run(info.run_id)) is not None:
                lineage = adopted_lineage(run, None)
        # modelreg's own capture has git and environment; a rebuilt record lacks the host.
        origin = "modelreg" if lineage and lineage.captured_at else "mlflow"
        missing = lineage.missing() if lineage else ["run"]
        return LineageView(
            name=name,
            version=number,
            semver=record.semver if record else None,
            run_id=info.run_id,
            complete=not missing,
            missing=missing,
            record=lineage,
            source=origin,
        )

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
        target = stage if isinstance(stage, Stage) else Stage.parse(stage)
        number = self.resolve(name, ref)
        current = lifecycle.fold(self.ledger.events(name, version=number)).get(number)
        needed = Permission.CONTRIBUTE
        if current is Stage.PRODUCTION:
            needed = Permission.APPROVE  # taking Production away weighs like a rollback
        if target is Stage.PRODUCTION:
            needed = Permission.ADMINISTER
        who, _role = self.authorize(actor, needed, f"move versions to {target.value}")
        why = _reason(reason)
        self._ensure_adopted(name, number)
        if target is Stage.PRODUCTION and self.policy().source:
            return self.governance.override(name, number, reason=why, actor=who)
        with self.ledger.locked(name) as txn:
            events = txn.events(name)
            state = lifecycle.fold(events)
            if target is Stage.PRODUCTION:
                changes = lifecycle.plan_governed_promotion(name, state, number)
            else:
                changes = lifecycle.plan_transition(name, state, number, target)
            return [EventView.of(e) for e in self._apply(txn, name, events, changes, who, why)]

    def rollback(
        self, name: str, to: str | int | None = None, *, reason: str = "", actor: str | None = None
    ) -> list[EventView]:
        """Return Production to the previous Production version (or to ``to``).

        Under a policy that requires verified digests the target's artifacts are
        re-hashed first: a rollback never points Production at changed files
        (the refusal is recorded as a DECLINE and raises IntegrityError).
        """
        who, _role = self.authorize(actor, Permission.APPROVE, "roll back Production")
        why = _reason(reason)
        target = self.resolve(name, to) if to is not None else None
        check_model_name(name)
        self.gateway.model(name)
        planned = lifecycle.plan_rollback(name, self.ledger.events(name), target)
        back = planned[-1].version
        problems: list[str] = []
        rules = self.policy()
        if rules.source and rules.for_model(name).gates.require_verified_digest:
            problems = self._verify_one(name, back).problems  # slow: before the lock
        with self.ledger.locked(name) as txn:
            events = txn.events(name)
            changes = lifecycle.plan_rollback(name, events, target)
            if changes[-1].version != back:
                raise ConflictError(
                    f"Production of {name} changed during the rollback; run it again"
                )
            if problems:
                txn.append(
                    NewEvent(
                        model=name,
                        version=back,
                        action=Action.DECLINE,
                        actor=who,
                        reason="rollback refused: the artifacts changed since registration: "
                        + "; ".join(problems[:5]),
                        details={"refused": "rollback", "failures": problems},
                    )
                )
            else:
                return [EventView.of(e) for e in self._apply(txn, name, events, changes, who, why)]
        raise IntegrityError(name, back, problems)

    def _apply(
        self,
        txn: LedgerTransaction,
        name: str,
        events: list[Event],
        changes: list[StageChange],
        actor: str,
        reason: str,
        details: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """Append ``changes`` and project them onto MLflow; undo MLflow if that fails."""
        # Subscribers of a promotion want to know what it replaced.
        previous = next((c.version for c in changes if c.from_stage is Stage.PRODUCTION), None)
        records = {
            change.version: record
            for change in changes
            if (record := txn.version_record(name, change.version)) is not None
        }
        appended = [
            txn.append(
                NewEvent(
                    model=name,
                    version=change.version,
                    action=change.action,
                    actor=actor,
                    from_stage=change.from_stage,
                    to_stage=change.to_stage,
                    reason=reason,
                    semver=records[change.version].semver if change.version in records else "",
                    digest=records[change.version].digest if change.version in records else "",
                    details={**(details or {}), "previous_version": previous}
                    if change.to_stage is Stage.PRODUCTION
                    else dict(details or {}),
                )
            )
            for change in changes
        ]
        before = events
        after = events + appended
        touched = {change.version for change in changes}
        try:
            self._project(name, after, touched, unchanged_from=before)
        except ModelregError:
            # Put MLflow back as it was; the ledger rolls back as the error leaves the lock.
            # Whatever cannot be restored now, doctor finds and repairs later.
            with contextlib.suppress(ModelregError):
                self._project(name, before, touched)
            raise
        return appended

    def _project(
        self,
        name: str,
        events: Sequence[Event],
        versions: Iterable[int],
        unchanged_from: Sequence[Event] | None = None,
    ) -> None:
        """Make MLflow show the state the events describe, for ``versions`` and the aliases.

        With ``unchanged_from`` (the events before a change, whose projection
        MLflow already shows) only aliases whose holder changed are written.
        A version deleted in MLflow behind modelreg's back has nothing left to
        project onto: it is skipped, and an alias meant for it stays unset (a
        rollback away from a deleted Production version must still complete).
        """
        state = lifecycle.fold(events)
        holders = _alias_holders(events, state)
        before = None if unchanged_from is None else _alias_holders(unchanged_from, None)
        gone: set[int] = set()
        # The alias is what serving and clients resolve, so it moves first.
        for alias, holder in holders.items():
            if before is not None and before[alias] == holder:
                continue
            if holder is None:
                self.gateway.delete_alias(name, alias)
                continue
            try:
                self.gateway.set_alias(name, alias, holder)
            except VersionNotFoundError:
                gone.add(holder)
                self.gateway.delete_alias(name, alias)
        for version in sorted(set(versions) - gone):
            stage = state.get(version, Stage.NONE)
            try:
                self.gateway.set_native_stage(name, version, stage)
            except VersionNotFoundError:
                log.warning("%s v%d was deleted in MLflow; nothing to project onto", name, version)
                continue
            self.gateway.set_version_tags(name, version, {STAGE_TAG: stage.value})

    # -- registration and adoption ----------------------------------------------

    def _ensure_adopted(self, name: str, version: int) -> None:
        if self.ledger.version_record(name, version) is not None:
            return
        refused: dict[int, ModelregError] = {}

        def skipped(info: VersionInfo, exc: ModelregError) -> None:
            refused[info.version] = exc

        self.sync(name, on_skip=skipped)
        if version in refused:
            raise refused[version]

    def sync(
        self,
        name: str | None = None,
        progress: Progress = _no_progress,
        *,
        actor: str | None = None,
        on_skip: Skipped | None = None,
    ) -> list[VersionView]:
        """Adopt versions registered by plain MLflow clients: semver, manifest, lineage record.

        A caller named by ``actor`` needs the contributor role; without one it is
        modelreg itself (the background sync, a webhook, adoption on demand).
        A version that cannot be adopted (a name modelreg cannot manage, artifacts
        missing from the store, an MLflow model file that does not parse) is
        skipped and reported to ``on_skip`` (and the log); the others are still
        adopted. Only an unreachable backend stops the round.
        """
        if actor is not None:
            self.authorize(actor, Permission.CONTRIBUTE, "adopt versions")
        self._check_ledger()
        if name is not None:
            check_model_name(name)
            self.gateway.model(name)
        known = self.ledger.known_versions()
        listed = self.gateway.versions(name)
        served = _mlflow_production(listed)
        pending = [
            info
            for info in listed
            if (info.name, info.version) not in known and info.status == "READY"
        ]
        adopted = []
        for done, info in enumerate(pending, start=1):
            progress(f"adopting {info.name} v{info.version}", done, len(pending))
            try:
                # One naming rule: what is adopted can be managed.
                check_model_name(info.name)
                view = self._adopt(info, served.get(info.name))
            except BackendUnavailableError:
                raise
            except ModelregError as exc:
                log.warning("not adopting %r v%d: %s", info.name, info.version, exc.message)
                if on_skip is not None:
                    on_skip(info, exc)
                continue
            if view is not None:
                adopted.append(view)
        return adopted

    def _adopt(self, info: VersionInfo, served: int | None) -> VersionView | None:
        entry = _Entry(
            action=Action.ADOPT,
            actor=self.settings.actor,
            model_class=info.tags.get("modelreg.model_class", ""),
            explicit=_explicit_semver(info.tags.get(SEMVER_TAG)),
            reason="registered outside modelreg; adopted by sync",
            served=served,
        )
        return self._enter(info, entry)

    def _enter(self, info: VersionInfo, entry: _Entry) -> VersionView | None:
        """Record a new MLflow version in the ledger: manifest, semver, lineage, first event.

        Returns None when another process recorded it first (adoption races).
        """
        run = self.gateway.run(info.run_id)
        with temporary_dir(self.settings.resolved_download_dir()) as tmp:
            model_dir = self.gateway.download_version(info.name, info.version, Path(tmp))
            manifest = build_manifest(model_dir)
            mlmodel = read_mlmodel(model_dir)
        lineage = (
            entry.lineage
            or (self.gateway.run_lineage(info.run_id) if info.run_id else None)
            or adopted_lineage(run, mlmodel)
        )
        facts = facts_from(mlmodel, run, lineage, entry.model_class)
        with self.ledger.locked(info.name) as txn:
            if txn.version_record(info.name, info.version) is not None:
                return None  # another process adopted it while we were hashing
            records = txn.version_records(info.name)
            previous = txn.highest_record(info.name)
            value = semver.next_version(
                info.name,
                [r.semver_value for r in records],
                facts_from_json(previous.facts) if previous else None,
                facts,
                entry.explicit,
            )
            events = txn.events(info.name)
            adopting = entry.action is Action.ADOPT
            stage = (
                _adopted_stage(
                    info,
                    lifecycle.fold(events),
                    governed=bool(self.policy().source),
                    served=entry.served,
                )
                if adopting
                else Stage.NONE
            )
            reason = entry.reason
            if adopting and stage is Stage.ARCHIVED and _holds_production(info):
                reason += (
                    f"; MLflow also shows v{entry.served} in Production, which "
                    f"models:/{info.name}/Production resolves to: kept that one"
                    if entry.served not in (None, info.version)
                    else "; the ledger already has a Production version"
                )
            registrant = (run.user_id if run else "") or info.user_id or entry.actor
            record = VersionRecord(
                model=info.name,
                version=info.version,
                semver=str(value),
                digest=manifest.digest,
                manifest=manifest.to_json(),
                run_id=info.run_id,
                source=info.source,
                lineage_complete=not lineage.missing(),
                lineage_missing=",".join(lineage.missing()),
                facts=facts_to_json(facts),
                lineage=record_to_json(lineage),
                registered_at=datetime.now(UTC),
                registered_by=registrant if adopting else entry.actor,
            )
            txn.add_version(record)
            event = txn.append(
                NewEvent(
                    model=info.name,
                    version=info.version,
                    action=entry.action,
                    actor=entry.actor,
                    to_stage=stage,
                    reason=reason,
                    semver=record.semver,
                    digest=record.digest,
                    details={
                        "lineage_missing": lineage.missing(),
                        "run_id": info.run_id,
                        # Adopted: the name MLflow's client claimed. Registered here: the
                        # actor, authenticated when MODELREG_AUTH=mlflow.
                        "registrant_verified": not adopting and self.settings.auth == "mlflow",
                    },
                )
            )
            tags = {
                SEMVER_TAG: record.semver,
                DIGEST_TAG: record.digest,
                STAGE_TAG: stage.value,
                LEDGER_TAG: self.ledger.location(),
            }
            if entry.model_class:
                tags["modelreg.model_class"] = entry.model_class
            self.gateway.set_version_tags(info.name, info.version, tags)
            if entry.description:
                self.gateway.set_description(info.name, info.version, entry.description)
            state = lifecycle.fold([*events, event])
        fresh = self.gateway.version(info.name, info.version)
        return self._view(fresh, record, state, run)

    def register(self, model: Any, *, name: str, **options: Any) -> VersionView:
        """Log ``model`` with signature and lineage and register it (``registration.register``)."""
        return registration.register(self, model, name=name, **options)

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
        check_model_name(name)
        run_id = self.gateway.run_of(model_uri)
        run = self.gateway.run(run_id)
        record = self.gateway.run_lineage(run_id) or adopted_lineage(run, None)
        return self.register_version(
            name,
            model_uri,
            run_id,
            lineage=record,
            model_class="",
            explicit_semver=semver,
            description=description,
            actor=actor,
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
        check_model_name(name)
        who, _role = self.authorize(actor, Permission.CONTRIBUTE, "register versions")
        self._check_ledger()
        explicit = semver.parse(explicit_semver) if explicit_semver else None
        if explicit is not None:
            semver.next_version(
                name, self._semvers(name), None, semver.VersionFacts(None), explicit
            )
        info, created = self.gateway.create_version(name, model_uri, run_id)
        entry = _Entry(
            action=Action.REGISTER,
            actor=who,
            model_class=model_class,
            explicit=explicit,
            lineage=lineage,
            description=description,
        )
        try:
            view = self._enter(info, entry)
            if view is None:  # the background sync adopted it between create and record
                raise ConflictError(
                    f"{name} version {info.version} was adopted by a concurrent sync; "
                    "its semver and lineage come from MLflow"
                )
            return view
        except BaseException:
            # Nothing half-made stays behind; if even the undo fails, sync adopts the
            # orphan (or skips it, reporting why) rather than losing it.
            with contextlib.suppress(ModelregError):
                self.gateway.delete_version(name, info.version)
                if created:
                    self.gateway.delete_model(name)
            raise

    def _semvers(self, name: str) -> list[SemVer]:
        return [r.semver_value for r in self.ledger.version_records(name)]

    # -- integrity -------------------------------------------------------------

    def verify(
        self, name: str, ref: str | int | None = None, progress: Progress = _no_progress
    ) -> list[VerifyResult]:
        """Re-hash artifacts and compare them with the manifests recorded at registration."""
        check_model_name(name)
        numbers = (
            [self.resolve(name, ref)]
            if ref is not None
            else [v.version for v in self.gateway.versions(name)]
        )
        if ref is None:
            self.gateway.model(name)
        results = []
        for done, number in enumerate(numbers, start=1):
            progress(f"verifying {name} v{number}", done, len(numbers))
            results.append(self._verify_one(name, number))
        return results

    def _verify_one(self, name: str, number: int) -> VerifyResult:
        record = self.ledger.version_record(name, number)
        actual: str | None = None
        with temporary_dir(self.settings.resolved_download_dir()) as tmp:
            if record is None:
                model_dir = self.gateway.download_version(name, number, Path(tmp))
                actual = build_manifest(model_dir).digest
                problems = ["not adopted: no manifest recorded yet (run `modelreg sync`)"]
            else:
                manifest = Manifest.from_json(record.manifest)
                try:
                    model_dir = self.gateway.download_version(name, number, Path(tmp))
                except BackendUnavailableError:
                    raise
                except (BackendError, ArtifactsNotFoundError):
                    problems = self._verify_each(name, number, manifest, Path(tmp) / "each")
                else:
                    actual = build_manifest(model_dir).digest
                    problems = verify(model_dir, manifest)
        return VerifyResult(
            name=name,
            version=number,
            semver=record.semver if record else None,
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

    # -- drift repair --------------------------------------------------------------

    def doctor(self, *, fix: bool = False, actor: str | None = None) -> list[Drift]:
        """Find (and with ``fix`` repair) differences between the ledger and MLflow.

        One model's trouble (a deleted version, a name modelreg cannot manage, an
        MLflow error) is reported as a drift of its own and the others are still
        checked; only an unreachable backend stops the run.
        """
        needed = Permission.ADMINISTER if fix else Permission.READ
        who, _role = self.authorize(actor, needed, "repair drift" if fix else "check drift")
        self._check_ledger()
        drifts: list[Drift] = []
        known = self.ledger.known_versions()
        for info in self.gateway.models():
            try:
                check_model_name(info.name)
                drifts += self._doctor_model(info.name, known, fix=fix, actor=who)
            except BackendUnavailableError:
                raise
            except InvalidNameError as exc:
                drifts.append(
                    _model_trouble(
                        info.name,
                        "unmanageable name",
                        exc.message,
                        "not adopted; rename it in MLflow (MlflowClient.rename_registered_model)",
                    )
                )
            except ModelregError as exc:
                drifts.append(
                    _model_trouble(
                        info.name, "error", exc.message, "doctor went on with the other models"
                    )
                )
        return drifts

    def _doctor_model(
        self, name: str, known: set[tuple[str, int]], *, fix: bool, actor: str
    ) -> list[Drift]:
        unadopted = [
            v.version
            for v in self.gateway.versions(name)
            if (name, v.version) not in known and v.status == "READY"
        ]
        drifts = [
            Drift(
                name=name,
                version=number,
                kind="unadopted",
                expected="not recorded",
                actual="registered",
                note=f"`modelreg sync {name}` adopts it",
            )
            for number in unadopted
        ]
        if fix and unadopted:
            self.sync(name)
            drifts = [d.model_copy(update={"fixed": True}) for d in drifts]
        return drifts + self._model_drift(name, fix=fix, actor=actor)

    def drift(self, name: str) -> list[Drift]:
        """Differences between the ledger and MLflow for one model (what doctor reports)."""
        check_model_name(name)
        return self._compare(name, self.ledger.events(name))

    def react_to_mlflow_change(self, name: str) -> tuple[list[VersionView], list[Drift]]:
        """What modelreg does when MLflow reports a change to ``name`` (a webhook).

        New versions are adopted. Under a policy, an alias or stage moved in
        MLflow behind the ledger's back is put back at once (a recorded repair),
        so governance cannot be bypassed through MLflow; without one the drift
        is only returned, for ``doctor --fix``. Drifts come back marked ``fixed``
        when they were repaired.
        """
        adopted = self.sync(name)
        if not self.policy().source:
            return adopted, self.drift(name)
        return adopted, [d.model_copy(update={"fixed": True}) for d in self.repair(name)]

    def repair(self, name: str) -> list[Drift]:
        """Put MLflow back to the ledger's state for one model, acting as modelreg itself.

        This is how the service answers an alias moved behind its back (an MLflow
        webhook): the repair is recorded like ``doctor --fix`` with the service's actor.
        """
        check_model_name(name)
        return self._model_drift(name, fix=True, actor=self._actor(None))

    def _model_drift(self, name: str, *, fix: bool, actor: str) -> list[Drift]:
        if not fix:
            return self._compare(name, self.ledger.events(name))
        with self.ledger.locked(name) as txn:
            events = txn.events(name)
            found = self._compare(name, events)
            repairable = [d for d in found if d.repairable]
            if not repairable:
                return found
            deleted = {d.version for d in repairable if d.kind == DELETED_KIND}
            self._project(name, events, set(lifecycle.fold(events)) - deleted)
            for version in sorted({d.version or 0 for d in repairable}):
                txn.append(
                    NewEvent(
                        model=name,
                        version=version,
                        action=Action.DELETE if version in deleted else Action.REPAIR,
                        actor=actor,
                        reason="the version was deleted in MLflow; doctor recorded it"
                        if version in deleted
                        else "doctor re-applied the ledger state to MLflow",
                        details={
                            "drift": [
                                d.as_json() for d in repairable if (d.version or 0) == version
                            ]
                        },
                    )
                )
            return [d.model_copy(update={"fixed": d.repairable}) for d in found]

    def _compare(self, name: str, events: Sequence[Event]) -> list[Drift]:
        state = lifecycle.fold(events)
        if not state:
            return []
        model = self.gateway.model(name)
        infos = self.gateway.versions(name)
        present = {info.version for info in infos}
        recorded_gone = {e.version for e in events if e.action is Action.DELETE}
        gone = {v for v in state if v not in present and v not in recorded_gone}
        drifts = [
            Drift(
                name=name,
                version=version,
                kind=DELETED_KIND,
                expected=state[version].value,
                actual="deleted",
                note="doctor --fix records the deletion in the audit history",
            )
            for version in sorted(gone)
        ]
        expected_aliases = {
            PRODUCTION_ALIAS: lifecycle.holder(state, Stage.PRODUCTION),
            STAGING_ALIAS: lifecycle.staging_holder(events),
        }
        for alias, expected in expected_aliases.items():
            actual = model.aliases.get(alias)
            if actual == expected:
                continue
            missing = expected is not None and expected not in present
            drifts.append(
                Drift(
                    name=name,
                    version=actual or expected,
                    kind=f"alias {alias}",
                    expected=str(expected),
                    actual=str(actual),
                    # An alias cannot point at a deleted version; a person decides what next.
                    repairable=not missing,
                    note=f"v{expected} was deleted in MLflow: `modelreg rollback {name}` or "
                    f"promote another version"
                    if missing and alias == PRODUCTION_ALIAS
                    else (f"v{expected} was deleted in MLflow" if missing else ""),
                )
            )
        for info in infos:
            if info.version not in state:
                continue
            expected_stage = state[info.version].value
            if info.native_stage != expected_stage:
                drifts.append(
                    Drift(
                        name=name,
                        version=info.version,
                        kind="native stage",
                        expected=expected_stage,
                        actual=info.native_stage,
                    )
                )
            tag = info.tags.get(STAGE_TAG, "")
            if tag != expected_stage:
                drifts.append(
                    Drift(
                        name=name,
                        version=info.version,
                        kind="stage tag",
                        expected=expected_stage,
                        actual=tag or "(none)",
                    )
                )
        return drifts

    def health(self) -> dict[str, str]:
        """Reachability of MLflow and the ledger, for health endpoints."""
        status = {}
        for service, check in (("mlflow", self.gateway.ping), ("ledger", self.ledger.migrate)):
            try:
                check()
                status[service] = "ok"
            except (BackendError, BackendUnavailableError) as exc:
                status[service] = exc.message
        return status

    # -- serving support ---------------------------------------------------------

    def alias_version(self, name: str, alias: str) -> int:
        """The version ``alias`` points at now: one cheap MLflow call, what model servers poll.

        Under a policy, the aliases modelreg manages (``production``, ``staging``)
        are the ledger's: if MLflow's alias was moved behind modelreg's back, the
        ledger's holder is answered (and the bypass logged once), so a server never
        follows a version that did not pass the gates. The ledger is read only
        when MLflow's answer differs from the last one it confirmed.
        """
        check_model_name(name)
        version = self.gateway.alias_version(name, alias)
        managed = alias in {PRODUCTION_ALIAS, STAGING_ALIAS}
        if not managed or not self.policy().source or self._confirmed.get((name, alias)) == version:
            return version
        events = self.ledger.events(name)
        expected = _alias_holders(events, None)[alias]
        if expected == version:
            self._confirmed[(name, alias)] = version
            return version
        if self._bypass_logged.get((name, alias)) != version:
            self._bypass_logged[(name, alias)] = version
            log.warning(
                "%s@%s points at v%d in MLflow, but the ledger says %s: following the ledger "
                "(run `modelreg doctor --fix` to put MLflow right)",
                name,
                alias,
                version,
                f"v{expected}" if expected else "no version",
            )
        if expected is None:
            raise VersionNotFoundError(name, f"@{alias}")
        return expected

    def serving_record(self, name: str, version: int) -> ServingRecord:
        """Semver, digest and manifest of a version about to be served.

        A version registered by a plain MLflow client is adopted first (one
        ``sync``); one that still has no manifest is refused, because its
        artifacts could not be verified before loading.
        """
        check_model_name(name)
        record = self.ledger.version_record(name, version)
        if record is None:
            self.sync(name)
            record = self.ledger.version_record(name, version)
        if record is None:
            self.gateway.version(name, version)  # the NotFound error when it does not exist
            raise ModelNotReadyError(
                name,
                f"version {version} has no manifest in the ledger yet, so it cannot be "
                f"verified; check `modelreg versions {name}` and run `modelreg sync {name}`",
            )
        return ServingRecord(
            name=name,
            version=version,
            semver=record.semver,
            digest=record.digest,
            manifest=Manifest.from_json(record.manifest),
        )

    def download(self, name: str, version: int, dst: Path) -> Path:
        """Download a version's artifacts under ``dst`` and return the model directory."""
        check_model_name(name)
        return self.gateway.download_version(name, version, dst)


@dataclass(frozen=True)
class _Entry:
    """How a version enters the ledger: registered through modelreg or adopted."""

    action: Action
    actor: str
    model_class: str
    explicit: SemVer | None
    lineage: LineageRecord | None = None
    reason: str = ""
    description: str = ""
    served: int | None = None  # what MLflow resolves as Production for the model, if any


DELETED_KIND = "deleted in MLflow"


def _model_trouble(name: str, kind: str, actual: str, note: str) -> Drift:
    """A whole model doctor cannot check or repair, reported as its own row."""
    return Drift(
        name=name,
        version=None,
        kind=kind,
        expected="a model modelreg can manage",
        actual=actual,
        repairable=False,
        note=note,
    )


def _holds_production(info: VersionInfo) -> bool:
    return PRODUCTION_ALIAS in info.aliases or info.native_stage == Stage.PRODUCTION.value


def _mlflow_production(infos: Iterable[VersionInfo]) -> dict[str, int]:
    """Per model, the version plain MLflow clients get as Production.

    The ``production`` alias wins; otherwise ``models:/NAME/Production`` resolves
    to the newest version in the native Production stage (MLflow 3.17
    ``get_latest_versions``), even when older ones were left there too.
    """
    by_alias: dict[str, int] = {}
    by_stage: dict[str, int] = {}
    for info in infos:
        if PRODUCTION_ALIAS in info.aliases:
            by_alias[info.name] = info.version
        if info.native_stage == Stage.PRODUCTION.value:
            by_stage[info.name] = max(by_stage.get(info.name, 0), info.version)
    return {**by_stage, **by_alias}


def _alias_holders(
    events: Sequence[Event], state: Mapping[int, Stage] | None
) -> dict[str, int | None]:
    """Which version each managed alias should point at after ``events``."""
    folded = lifecycle.fold(events) if state is None else state
    return {
        PRODUCTION_ALIAS: lifecycle.holder(folded, Stage.PRODUCTION),
        STAGING_ALIAS: lifecycle.staging_holder(events),
    }


def _lineage_of(record: VersionRecord | None, run: RunInfo | None) -> LineageRecord | None:
    """The recorded lineage (full records only), or what MLflow shows for one not adopted."""
    if record is not None:
        return record_from_json(record.lineage) if record.lineage else None
    return adopted_lineage(run, None) if run is not None else None


def _ledger_exists(location: str) -> bool:
    """Whether the ledger a tag names exists: a SQLite file that is there, or any server."""
    if location.startswith("sqlite:///"):
        return Path(location.removeprefix("sqlite:///")).is_file()
    return True


def _explicit_semver(tag: str | None) -> SemVer | None:
    if not tag:
        return None
    try:
        return semver.parse(tag)
    except InvalidSemVerError:
        return None


def _adopted_stage(
    info: VersionInfo, state: Mapping[int, Stage], *, governed: bool, served: int | None
) -> Stage:
    """The stage an adopted version starts in: what plain MLflow clients gave it.

    Of several versions MLflow shows in Production, only the one it resolves
    (``served``) keeps Production; the others are archived, so adoption never
    changes what clients are served. Under a policy Production is earned
    through its gates, not by setting it in MLflow: such a version starts in
    None and doctor reports the alias.
    """
    if PRODUCTION_ALIAS in info.aliases:
        stage = Stage.PRODUCTION
    elif STAGING_ALIAS in info.aliases:
        stage = Stage.STAGING
    else:
        stage = Stage.parse(info.native_stage) if info.native_stage else Stage.NONE
    if stage is not Stage.PRODUCTION:
        return stage
    if served is not None and served != info.version:
        return Stage.ARCHIVED
    if governed:
        return Stage.NONE
    if lifecycle.holder(state, Stage.PRODUCTION) is not None:
        # The ledger already has a Production version; a second one is drift, not state.
        return Stage.ARCHIVED
    return stage


def dumps(value: Any) -> str:
    """JSON text of a view or a list of views (used by the CLI and the API)."""
    if isinstance(value, list):
        return json.dumps([v.as_json() for v in value], indent=2)
    return json.dumps(value.as_json(), indent=2)
