"""What serving replicas report: the version each slot serves and their reload history.

Each replica reports every few seconds (:class:`~modelreg.domain.ReplicaReport`):
its slots replace the rows it reported before, and its reloads and refused
loads since the last report are appended. A replica that stops reporting
keeps its last rows, shown with their age, until :meth:`ReplicaStore.prune`
removes them; the reload history is kept for a retention.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select

from modelreg.domain import ReloadEvent, ReloadOutcome, ReplicaReport, ServedSlot
from modelreg.errors import shorten
from modelreg.ledger.rows import utc
from modelreg.ledger.store import Ledger
from modelreg.ledger.tables import ReplicaEventRow, ReplicaSlotRow

MESSAGE_CHARS = 1000
"""A reload message is kept to this many characters."""


@dataclass(frozen=True, kw_only=True)
class ReplicaSlot(ServedSlot):
    """A :class:`~modelreg.domain.ServedSlot` with the replica that reported it, and when."""

    replica: str
    reported_at: datetime


@dataclass(frozen=True, kw_only=True)
class ReplicaReload(ReloadEvent):
    """A :class:`~modelreg.domain.ReloadEvent` with the replica it happened in."""

    replica: str


class ReplicaStore:
    """The ledger's record of serving replicas (tables ``replica_slots``, ``replica_events``)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def put(self, report: ReplicaReport, *, now: datetime | None = None) -> None:
        """Replace the replica's slots with ``report.slots`` and append its reloads."""
        now = now or datetime.now(UTC)
        replica = report.replica
        with self.ledger.session(write=True) as session:
            session.execute(delete(ReplicaSlotRow).where(ReplicaSlotRow.replica == replica))
            session.add_all(
                ReplicaSlotRow(
                    replica=replica,
                    model=slot.model,
                    variant=slot.variant,
                    alias=slot.alias,
                    version=slot.version,
                    semver=slot.semver,
                    digest=slot.digest,
                    since=slot.since,
                    reasons=list(slot.reasons),
                    reported_at=now,
                    experiment=slot.experiment,
                    experiment_revision=slot.experiment_revision,
                )
                for slot in report.slots
            )
            session.add_all(
                ReplicaEventRow(
                    replica=replica,
                    model=event.model,
                    variant=event.variant,
                    version=event.version,
                    outcome=event.outcome.value,
                    reason=shorten(event.reason, 64),
                    message=shorten(event.message, MESSAGE_CHARS),
                    at=event.at,
                )
                for event in report.reloads
            )

    def slots(self, model: str | None = None) -> list[ReplicaSlot]:
        """Every reported slot (of ``model``), by model, variant and replica."""
        query = select(ReplicaSlotRow).order_by(
            ReplicaSlotRow.model, ReplicaSlotRow.variant, ReplicaSlotRow.replica
        )
        if model is not None:
            query = query.where(ReplicaSlotRow.model == model)
        with self.ledger.session() as session:
            return [
                ReplicaSlot(
                    model=row.model,
                    variant=row.variant,
                    alias=row.alias,
                    version=row.version,
                    semver=row.semver,
                    digest=row.digest,
                    since=utc(row.since) if row.since else None,
                    reasons=tuple(row.reasons or ()),
                    experiment=row.experiment,
                    experiment_revision=row.experiment_revision,
                    replica=row.replica,
                    reported_at=utc(row.reported_at),
                )
                for row in session.scalars(query)
            ]

    def reloads(
        self, model: str | None, *, limit: int, offset: int
    ) -> tuple[list[ReplicaReload], int]:
        """Reloads and refused loads (of ``model``), newest first: one page and the total."""
        events = ReplicaEventRow
        page = select(events).order_by(events.at.desc(), events.id.desc())
        count = select(func.count()).select_from(events)
        if model is not None:
            page = page.where(events.model == model)
            count = count.where(events.model == model)
        with self.ledger.session() as session:
            total = int(session.execute(count).scalar_one())
            rows = session.scalars(page.limit(limit).offset(offset))
            return [
                ReplicaReload(
                    model=row.model,
                    variant=row.variant,
                    version=row.version,
                    outcome=ReloadOutcome(row.outcome),
                    reason=row.reason,
                    message=row.message,
                    at=utc(row.at),
                    replica=row.replica,
                )
                for row in rows
            ], total

    def prune(self, *, silent: timedelta, history: timedelta, now: datetime | None = None) -> None:
        """Forget replicas silent for ``silent`` and reloads older than ``history``."""
        now = now or datetime.now(UTC)
        with self.ledger.session(write=True) as session:
            session.execute(delete(ReplicaSlotRow).where(ReplicaSlotRow.reported_at < now - silent))
            session.execute(delete(ReplicaEventRow).where(ReplicaEventRow.at < now - history))
