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

from datetime import UTC, datetime, timedelta

from modelreg.domain import (
    Action,
    CompileDetails,
    NewEvent,
    ReplicaReport,
    ServingRecord,
    check_model_name,
)
from modelreg.ledger import Ledger
from modelreg.ledger.replicas import ReplicaStore
from modelreg.policy import Permission
from modelreg.registry.access import Access
from modelreg.registry.reads import check_page
from modelreg.settings import Settings
from modelreg.views import ReloadPage, ReloadView, ServedSlotView

SILENT = timedelta(minutes=1)
"""A replica reports every ``flush_interval`` (2 s by default): this long without a report
means it is stuck or gone, and its slots are shown as silent."""

SILENT_AFTER = timedelta(days=1)
"""A replica that has not reported for this long (or the history setting, if shorter) is
forgotten: its process is gone."""


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

    def compiled(self, name: str, version: int, digest: str) -> CompileDetails | None:
        """The newest compiled form that passed verification for these artifacts, if any."""
        found = None
        for event in self.ledger.events(name, version=version):
            if event.action is Action.COMPILE and event.digest == digest:
                details = event.typed()
                if isinstance(details, CompileDetails) and details.passed:
                    found = details
        return found

    def record_compilation(self, record: ServingRecord, details: CompileDetails) -> bool:
        """Append a COMPILE event for ``record``'s version, unless the same one is there.

        Every replica verifies a compiled form on every load; the ledger keeps
        one event per (artifacts, compiled artifact, outcome, reason), the
        first, so it reads as a history of what was compiled rather than a
        log of loads. Returns whether an event was appended.
        """
        key = (details.compiled_digest, details.passed, details.refused)
        with self.ledger.locked(record.name) as tx:
            for event in tx.events(record.name, version=record.version):
                if event.action is not Action.COMPILE or event.digest != record.digest:
                    continue
                seen = event.typed()
                if isinstance(seen, CompileDetails) and (
                    (seen.compiled_digest, seen.passed, seen.refused) == key
                ):
                    return False
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
        return True

    def prune(self) -> None:
        """Forget silent replicas and reloads past the history (the workers' round)."""
        history = timedelta(days=self.settings.replica_history_days)
        self.store.prune(silent=min(SILENT_AFTER, history), history=history)
