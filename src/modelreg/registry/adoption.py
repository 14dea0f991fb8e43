"""Versions entering the ledger: registered through modelreg, or adopted from plain MLflow.

A new version gets a manifest (its artifacts hashed once), a semver computed
from its facts, a lineage record and its first event, in one transaction under
the model's lock; MLflow gets the tags that mirror them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelreg import lifecycle, semver
from modelreg import lineage as capture
from modelreg.domain import (
    Action,
    DataFingerprint,
    LineageRecord,
    SemVer,
    ServingRecord,
    Stage,
    check_model_name,
)
from modelreg.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidInputError,
    InvalidSemVerError,
    ModelNotReadyError,
    ModelregError,
)
from modelreg.ledger import Ledger, NewEvent, VersionRecord
from modelreg.mlflow_gateway import (
    PRODUCTION_ALIAS,
    STAGING_ALIAS,
    MlflowGateway,
    VersionInfo,
    read_mlmodel,
)
from modelreg.policy import Permission
from modelreg.registration import (
    adopted_lineage,
    facts_from,
    infer_serving_signature,
    is_sklearn,
    known_requirements,
    params_of,
    served_example,
    trusted_types,
)
from modelreg.registry.access import SYSTEM, Access, Caller
from modelreg.registry.artifacts import Artifacts, Progress, no_progress
from modelreg.registry.ledger_check import LedgerCheck
from modelreg.registry.projection import (
    DIGEST_TAG,
    LEDGER_TAG,
    MODEL_CLASS_TAG,
    SEMVER_TAG,
    STAGE_TAG,
)
from modelreg.registry.reads import version_view
from modelreg.semver import VersionFacts
from modelreg.settings import Settings
from modelreg.views import VersionView

log = logging.getLogger("modelreg.registry")

Skipped = Callable[[VersionInfo, ModelregError], None]
"""Told about each version sync could not adopt, and why."""


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


class Adoption:
    """Register new versions and adopt the ones plain MLflow clients registered."""

    def __init__(
        self,
        settings: Settings,
        gateway: MlflowGateway,
        ledger: Ledger,
        access: Access,
        ledger_check: LedgerCheck,
        artifacts: Artifacts,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.ledger = ledger
        self.access = access
        self.ledger_check = ledger_check
        self.artifacts = artifacts

    # -- adoption ------------------------------------------------------------------

    def ensure_adopted(self, name: str, version: int) -> None:
        """Adopt ``version`` now if the ledger has no record of it; raise why it cannot be."""
        if self.ledger.version_record(name, version) is not None:
            return
        refused: dict[int, ModelregError] = {}

        def skipped(info: VersionInfo, exc: ModelregError) -> None:
            refused[info.version] = exc

        self.sync(name, actor=SYSTEM, on_skip=skipped)
        if version in refused:
            raise refused[version]

    def sync(
        self,
        name: str | None = None,
        progress: Progress = no_progress,
        *,
        actor: Caller,
        on_skip: Skipped | None = None,
    ) -> list[VersionView]:
        """Adopt versions registered by plain MLflow clients: semver, manifest, lineage record.

        A caller named by ``actor`` (or ``None``, the configured actor) needs the
        contributor role; :data:`~modelreg.registry.access.SYSTEM` is modelreg
        itself (the background sync, a webhook, adoption on demand).
        A version that cannot be adopted (a name modelreg cannot manage, artifacts
        missing from the store, an MLflow model file that does not parse) is
        skipped and reported to ``on_skip`` (and the log); the others are still
        adopted. Only an unreachable backend stops the round.
        """
        self.access.authorize_caller(actor, Permission.CONTRIBUTE, "adopt versions")
        self.ledger_check.ensure()
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
            model_class=info.tags.get(MODEL_CLASS_TAG, ""),
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
        with self.artifacts.scratch() as tmp:
            fetched = self.artifacts.fetch(info.name, info.version, tmp)
            manifest = fetched.manifest
            mlmodel = read_mlmodel(fetched.model_dir)
        lineage = (
            entry.lineage
            or (self.gateway.run_lineage(info.run_id) if info.run_id else None)
            or adopted_lineage(run, mlmodel)
        )
        facts = facts_from(mlmodel, run, lineage, entry.model_class)
        with self.ledger.locked(info.name) as txn:
            if txn.version_record(info.name, info.version) is not None:
                return None  # another process adopted it while we were hashing
            # The highest semver is all the next one depends on: one indexed row.
            previous = txn.highest_record(info.name)
            value = semver.next_version(
                info.name,
                [previous.semver] if previous else [],
                previous.facts if previous else None,
                facts,
                entry.explicit,
            )
            adopting = entry.action is Action.ADOPT
            stage = (
                _adopted_stage(
                    info,
                    txn.state(info.name).stages,
                    governed=self.access.governed(),
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
                semver=value,
                digest=manifest.digest,
                manifest=manifest,
                run_id=info.run_id,
                source=info.source,
                lineage_complete=not lineage.missing(),
                lineage_missing=tuple(lineage.missing()),
                facts=facts,
                lineage=lineage,
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
                    semver=str(record.semver),
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
                SEMVER_TAG: str(record.semver),
                DIGEST_TAG: record.digest,
                STAGE_TAG: stage.value,
                LEDGER_TAG: self.ledger.location(),
            }
            if entry.model_class:
                tags[MODEL_CLASS_TAG] = entry.model_class
            # Tags MLflow already shows with these values are not written again.
            self.gateway.set_version_tags(info.name, info.version, tags, current=info.tags)
            if entry.description:
                self.gateway.set_description(info.name, info.version, entry.description)
            state = txn.state(info.name, [event.version]).stages
        fresh = self.gateway.version(info.name, info.version)
        return version_view(fresh, record, state, run)

    # -- registration ----------------------------------------------------------------

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
        to infer it from (InvalidInputError otherwise).
        """
        served: dict[Any, str] = {}
        if signature is None:
            example = input_example if input_example is not None else training_data
            if example is None:
                raise InvalidInputError(
                    "a model signature is required: pass signature=, input_example= or "
                    "training_data="
                )
            signature, served = infer_serving_signature(model, example)
        if input_example is None and training_data is not None and hasattr(training_data, "head"):
            input_example = training_data.head(5)
        # The example must match the inferred signature: the server warms up on it.
        input_example = served_example(input_example, served)
        hyper = dict(params) if params is not None else params_of(model)
        gateway = self.gateway
        with gateway.run_context(run_id, experiment) as active_run:
            data: list[DataFingerprint] = []
            datasets = []
            if training_data is not None:
                fp = capture.fingerprint(training_data, name="training", version=data_version)
                data.append(fp)
                if hasattr(training_data, "columns"):
                    datasets.append(
                        gateway.pandas_dataset(training_data, "training", fp.sha256 or "")
                    )
            data += capture.dvc_entries(code_path)
            record = capture.build_record(
                run_id=active_run,
                params=hyper,
                data=data,
                git=capture.capture_git(code_path),
                environment=capture.capture_environment(),
            )
            tags = capture.lineage_tags(record)
            if data_version:
                tags["data_version"] = data_version
            gateway.log_lineage(record, tags, capture.pip_freeze(), datasets)
            if flavor is None and is_sklearn(model):
                trusted = trusted_types(model)
                uri = gateway.log_sklearn(
                    model, signature, input_example, trusted, known_requirements(trusted)
                )
            else:
                uri = gateway.log_pyfunc_flavor(
                    flavor or "sklearn", model, signature, input_example
                )
            model_class = f"{type(model).__module__}.{type(model).__qualname__}"
            return self.register_version(
                name,
                uri,
                active_run,
                lineage=record,
                model_class=model_class,
                explicit_semver=semver,
                description=description,
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
        who, _role = self.access.authorize(actor, Permission.CONTRIBUTE, "register versions")
        self.ledger_check.ensure()
        explicit = semver.parse(explicit_semver) if explicit_semver else None
        if explicit is not None:
            semver.next_version(name, self._semvers(name), None, VersionFacts(None), explicit)
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
        """The highest semver of ``name`` (all an explicit one is checked against), or none."""
        highest = self.ledger.highest_record(name)
        return [highest.semver] if highest else []

    # -- serving support ---------------------------------------------------------------

    def serving_record(self, name: str, version: int) -> ServingRecord:
        """Semver, digest and manifest of a version about to be served.

        A version registered by a plain MLflow client is adopted first (one
        ``sync``); one that still has no manifest is refused with
        ModelNotReadyError, because its artifacts could not be verified before loading.
        """
        check_model_name(name)
        record = self.ledger.version_record(name, version)
        if record is None:
            self.sync(name, actor=SYSTEM)
            record = self.ledger.version_record(name, version)
        if record is None or record.manifest is None:
            self.gateway.version(name, version)  # the NotFound error when it does not exist
            raise ModelNotReadyError(
                name,
                f"version {version} has no manifest in the ledger yet, so it cannot be "
                f"verified; check `modelreg versions {name}` and run `modelreg sync {name}`",
            )
        return ServingRecord(
            name=name,
            version=version,
            semver=str(record.semver),
            digest=record.digest,
            manifest=record.manifest,
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
