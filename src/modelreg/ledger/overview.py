"""Reads across models for overviews (the dashboard): paged events, open requests, counts.

Every query here is answered by an index and returns at most one page, so an
overview stays fast however long the history is: events by id (newest first)
with optional model, actor, action and time filters; the projection's open
requests; per-model stage and request counts (one GROUP BY each); and which
serving replicas reported experiment counts, and when.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select

from modelreg.domain import Action, Event, Stage
from modelreg.ledger.rows import event_of, utc
from modelreg.ledger.store import Ledger
from modelreg.ledger.tables import EventRow, ExperimentCountsRow, VersionStateRow


@dataclass(frozen=True)
class EventFilter:
    """Which events an audit page shows; None matches everything for that field.

    ``since`` and ``until`` are inclusive bounds on the event time (aware UTC).
    """

    model: str | None = None
    actor: str | None = None
    action: Action | None = None
    version: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, query: Select[Any]) -> Select[Any]:
        """``query`` narrowed to the events this filter matches."""
        if self.model is not None:
            query = query.where(EventRow.model == self.model)
        if self.version is not None:
            query = query.where(EventRow.version == self.version)
        if self.actor is not None:
            query = query.where(EventRow.actor == self.actor)
        if self.action is not None:
            query = query.where(EventRow.action == self.action.value)
        if self.since is not None:
            query = query.where(EventRow.at >= self.since)
        if self.until is not None:
            query = query.where(EventRow.at <= self.until)
        return query


@dataclass(frozen=True)
class OpenRequest:
    """A version's open promotion request, as the state projection and its REQUEST event say."""

    model: str
    version: int
    stage: Stage | None
    request_id: int
    requester: str
    requested_at: datetime | None
    comment: str
    approvers: tuple[str, ...]


@dataclass(frozen=True)
class ReplicaCounts:
    """One serving replica's latest cumulative counts for one experiment variant."""

    experiment_id: str
    replica: str
    variant: str
    version: int
    requests: int
    errors: int
    updated_at: datetime


class Overview:
    """Cross-model reads over the ledger, one page at a time."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def events(self, where: EventFilter, *, limit: int, offset: int) -> tuple[list[Event], int]:
        """Events matching ``where``, newest first: one page and the total that match."""
        page = where.where(select(*EventRow.__table__.columns))
        page = page.order_by(EventRow.id.desc()).limit(limit).offset(offset)
        count = where.where(select(func.count()).select_from(EventRow))
        with self.ledger.session() as session:
            total = int(session.execute(count).scalar_one())
            return [event_of(row) for row in session.execute(page)], total

    def open_requests(
        self, model: str | None, *, limit: int, offset: int
    ) -> tuple[list[OpenRequest], int]:
        """Open promotion requests (oldest first), one page, and how many are open."""
        state = VersionStateRow
        query = (
            select(state, EventRow.at, EventRow.reason)
            .join(EventRow, EventRow.id == state.request_id, isouter=True)
            .where(state.request_id.is_not(None))
        )
        count = select(func.count()).select_from(state).where(state.request_id.is_not(None))
        if model is not None:
            query = query.where(state.model == model)
            count = count.where(state.model == model)
        query = query.order_by(state.request_id).limit(limit).offset(offset)
        with self.ledger.session() as session:
            total = int(session.execute(count).scalar_one())
            found = [
                OpenRequest(
                    model=row.model,
                    version=row.version,
                    stage=Stage(row.stage) if row.stage else None,
                    request_id=int(row.request_id or 0),  # never None: filtered above
                    requester=row.requester,
                    requested_at=utc(at) if at is not None else None,
                    comment=reason or "",
                    approvers=tuple(str(v["actor"]) for v in row.votes or []),
                )
                for row, at, reason in session.execute(query)
            ]
        return found, total

    def stage_counts(self) -> dict[str, dict[Stage, int]]:
        """Per model, how many versions are in each stage (from the projection)."""
        state = VersionStateRow
        query = select(state.model, state.stage, func.count()).group_by(state.model, state.stage)
        counts: dict[str, dict[Stage, int]] = {}
        with self.ledger.session() as session:
            for model, stage, count in session.execute(query):
                if stage is not None:
                    counts.setdefault(model, {})[Stage(stage)] = int(count)
        return counts

    def request_counts(self) -> dict[str, int]:
        """Per model, how many versions have an open promotion request."""
        state = VersionStateRow
        query = (
            select(state.model, func.count())
            .where(state.request_id.is_not(None))
            .group_by(state.model)
        )
        with self.ledger.session() as session:
            return {str(model): int(count) for model, count in session.execute(query)}

    def replica_reports(self, experiment_ids: Collection[str]) -> list[ReplicaCounts]:
        """What each serving replica last reported for these experiments, newest first."""
        if not experiment_ids:
            return []
        counts = ExperimentCountsRow
        query = (
            select(counts)
            .where(counts.experiment_id.in_(sorted(set(experiment_ids))))
            .order_by(counts.updated_at.desc(), counts.replica, counts.variant)
        )
        with self.ledger.session() as session:
            return [
                ReplicaCounts(
                    experiment_id=row.experiment_id,
                    replica=row.replica,
                    variant=row.variant,
                    version=row.version,
                    requests=row.requests,
                    errors=row.errors,
                    updated_at=utc(row.updated_at),
                )
                for row in session.scalars(query)
            ]
