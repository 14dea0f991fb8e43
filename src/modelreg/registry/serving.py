"""What serving replicas report: the version each slot serves, since when, and reloads.

Model servers started by ``modelreg serve`` report every few seconds
(:class:`~modelreg.domain.ReplicaReport`, through :meth:`ServingReports.record`,
which a replica reaches as the :class:`~modelreg.serving.source.ReplicaSink`
protocol); the dashboard's Serving page and ``GET /api/v1/serving`` read
them. The record is kept in the ledger (:mod:`modelreg.ledger.replicas`):
slots as last reported, reloads and refused loads for
``MODELREG_REPLICA_HISTORY_DAYS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from modelreg.domain import (
    Action,
    CompileDetails,
    Event,
    NewEvent,
    ReplicaReport,
    ServingRecord,
    check_model_name,
)
from modelreg.errors import ModelregError
from modelreg.experiments.definition import ExperimentState
from modelreg.ledger import Ledger
from modelreg.ledger.replicas import ReplicaStore
from modelreg.policy import Permission
from modelreg.registry.access import Access
from modelreg.registry.reads import check_page
from modelreg.settings import Settings
from modelreg.views import (
    ExperimentRoutingView,
    ExperimentView,
    ReloadPage,
    ReloadView,
    ServedSlotView,
)

log = logging.getLogger("modelreg.serving")

SILENT = timedelta(minutes=1)
"""A replica reports every ``flush_interval`` (2 s by default): this long without a report
means it is stuck or gone, and its slots are shown as silent."""

SILENT_AFTER = timedelta(days=1)
"""A replica that has not reported for this long (or the history setting, if shorter) is
forgotten: its process is gone."""


def experiment_routing(
    view: ExperimentView, slots: Sequence[ServedSlotView]
) -> ExperimentRoutingView:
    """Which of the replicas in ``slots`` follow ``view``'s experiment as it is now.

    A replica counts when it reported a slot of the model within the last
    minute (``silent_seconds`` None). It follows a running experiment once it
    routes by the experiment's current revision and reports every treatment
    loaded at its version; a stopped one once it routes by the current
    revision (everyone to control); a concluded one once it no longer routes
    by it. A replica reports a revision only after its router switched to it
    (``serving/arms.py``).
    """
    live: dict[str, list[ServedSlotView]] = {}
    for slot in slots:
        if slot.model == view.model and slot.silent_seconds is None:
            live.setdefault(slot.replica, []).append(slot)
    routed_by: list[str] = []
    waiting: list[str] = []
    for replica in sorted(live):
        (routed_by if _follows(view, live[replica]) else waiting).append(replica)
    return ExperimentRoutingView(
        experiment=view.id, model=view.model, routed_by=routed_by, waiting=waiting
    )


def _follows(view: ExperimentView, slots: Sequence[ServedSlotView]) -> bool:
    """Whether one replica's ``slots`` (of ``view``'s model) show it follows ``view``."""
    routes = {(slot.experiment, slot.experiment_revision) for slot in slots}
    if view.state == ExperimentState.CONCLUDED:
        return all(experiment != view.id for experiment, _ in routes)
    current = any(
        experiment == view.id and revision is not None and revision >= view.revision
        for experiment, revision in routes
    )
    if view.state != ExperimentState.RUNNING:
        return current
    loaded = {(slot.variant, slot.version) for slot in slots if slot.version is not None}
    return current and {(arm.variant, arm.version) for arm in view.treatments} <= loaded


class ServingReports:
    """Serving replicas' reports, written by replicas and read by people."""

    def __init__(self, settings: Settings, ledger: Ledger, access: Access) -> None:
        self.settings = settings
        self.access = access
        self.ledger = ledger
        self.store = ReplicaStore(ledger)

    def record(self, report: ReplicaReport) -> None:
        """Store one replica's report (its slots replace the ones it reported before)."""
        self.store.put(report)

    def slots(self, model: str | None = None, *, actor: str | None = None) -> list[ServedSlotView]:
        """Every reported slot (of ``model``), by model, variant and replica."""
        self.access.authorize(actor, Permission.READ, "read serving replicas")
        if model is not None:
            check_model_name(model)
        now = datetime.now(UTC)
        views = []
        for slot in self.store.slots(model):
            quiet = now - slot.reported_at
            view = ServedSlotView.model_validate(slot, from_attributes=True)
            if quiet > SILENT:
                view = view.model_copy(update={"silent_seconds": quiet.total_seconds()})
            views.append(view)
        return views

    def experiment_routing(
        self, view: ExperimentView, *, actor: str | None = None
    ) -> ExperimentRoutingView:
        """Which live replicas of ``view``'s model route its experiment (see the function)."""
        return experiment_routing(view, self.slots(view.model, actor=actor))

    def wait_for_routing(
        self,
        view: ExperimentView,
        seconds: float,
        *,
        probe_seconds: float = 0.5,
        actor: str | None = None,
    ) -> ExperimentRoutingView:
        """Re-read the replicas' reports until none that is live lags behind ``view``.

        Returns the last :class:`ExperimentRoutingView`: ``waiting`` is empty
        unless ``seconds`` passed first. Replicas report every
        ``flush_interval`` (2 s by default), so expect a few seconds.
        """
        deadline = time.monotonic() + seconds
        while True:
            routing = self.experiment_routing(view, actor=actor)
            if not routing.waiting or time.monotonic() >= deadline:
                return routing
            time.sleep(probe_seconds)

    def reloads(
        self,
        model: str | None = None,
        *,
        limit: int = 25,
        offset: int = 0,
        actor: str | None = None,
    ) -> ReloadPage:
        """Reloads and refused loads (of ``model``), newest first, one page."""
        self.access.authorize(actor, Permission.READ, "read serving replicas")
        check_page(limit, offset)
        if model is not None:
            check_model_name(model)
        found, total = self.store.reloads(model, limit=limit, offset=offset)
        return ReloadPage(
            reloads=[ReloadView.model_validate(r, from_attributes=True) for r in found],
            total=total,
            offset=offset,
            limit=limit,
        )

    def with_compilation(self, record: ServingRecord) -> ServingRecord:
        """``record`` with the policy's compile rules and the last verified compiled form."""
        rules = self.access.policy().for_model(record.name).serving
        return replace(
            record,
            compile=rules.compile,
            compile_tolerance=rules.compile_tolerance,
            compiled=self.compiled(record.name, record.version, record.digest),
        )

    def compiled(self, name: str, version: int, digest: str) -> CompileDetails | None:
        """The newest compiled form that passed verification for these artifacts, if any."""
        events = self.ledger.events(name, version=version)
        passed = [details for details in _compilations(events, digest) if details.passed]
        return passed[-1] if passed else None

    def record_compilation(
        self,
        record: ServingRecord,
        details: CompileDetails,
        artifact: bytes | None = None,
        *,
        store: Callable[[str, int, str, bytes], str] | None = None,
    ) -> CompileDetails:
        """Append a COMPILE event for ``record``'s version, unless the same one is there.

        Every replica verifies a compiled form on every load; the ledger keeps
        one event per (artifacts, compiled artifact, outcome, reason), the
        first, so it reads as a history of what was compiled rather than a
        log of loads. A passed form's ``artifact`` is first kept beside the
        version by ``store(name, version, digest, data)``, which returns its
        URI; a failure to store it is logged and the event says it is not
        stored. Returns the details as
        recorded (the existing event's when there was one).
        """
        key = (details.compiled_digest, details.passed, details.refused)
        seen = _recorded(self.ledger.events(record.name, version=record.version), record, key)
        if seen is not None:
            return seen
        if details.passed and artifact is not None and store is not None:
            try:
                uri = store(record.name, record.version, record.digest, artifact)
                details = details.model_copy(update={"artifact_uri": uri})
            except ModelregError as exc:
                log.warning(
                    "%s v%d: the compiled form could not be stored beside the version "
                    "(each server compiles its own): %s",
                    record.name,
                    record.version,
                    exc.message,
                )
        with self.ledger.locked(record.name) as tx:
            # Another replica may have recorded the same form while this one stored it.
            seen = _recorded(tx.events(record.name, version=record.version), record, key)
            if seen is not None:
                return seen
            tx.append(
                NewEvent(
                    model=record.name,
                    version=record.version,
                    action=Action.COMPILE,
                    actor=self.access.actor(),
                    semver=record.semver,
                    digest=record.digest,
                    reason="compiled and verified"
                    if details.passed
                    else f"compiled form refused: {details.refused}",
                    details=details.model_dump(mode="json"),
                )
            )
        return details

    def prune(self) -> None:
        """Forget silent replicas and reloads past the history (the workers' round)."""
        history = timedelta(days=self.settings.replica_history_days)
        self.store.prune(silent=min(SILENT_AFTER, history), history=history)


def _compilations(events: Iterable[Event], digest: str) -> list[CompileDetails]:
    """The COMPILE details among a version's ``events`` about the artifacts ``digest``, in order."""
    found = []
    for event in events:
        details = event.typed()
        if (
            event.action is Action.COMPILE
            and event.digest == digest
            and isinstance(details, CompileDetails)
        ):
            found.append(details)
    return found


def _recorded(
    events: Iterable[Event], record: ServingRecord, key: tuple[str, bool, str]
) -> CompileDetails | None:
    """The COMPILE of ``record``'s artifacts with ``key`` (digest, passed, refused), if any."""
    for details in _compilations(events, record.digest):
        if (details.compiled_digest, details.passed, details.refused) == key:
            return details
    return None
