"""The ``version_state`` projection: each version's current state, kept beside its events.

Every :meth:`LedgerTransaction.append` applies its event here in the same
transaction (:func:`apply`: one primary-key read, one write), so a promotion,
``show``, a search by stage and the serving lookups read a handful of rows
whatever the length of the history. The truth is still the fold over the
events (:meth:`lifecycle.ModelState.fold`): :func:`disagreements` compares
the two for ``doctor`` and :func:`rebuild` re-derives a model's rows from
its events (also how :meth:`Ledger.migrate` builds the projection of a
ledger that had events before the projection existed).

Reads return :class:`lifecycle.ModelState` values, which callers query
(holders, Production history, open requests) instead of replaying events.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from modelreg.domain import Event, Stage
from modelreg.ledger.rows import event_of, utc
from modelreg.ledger.tables import EventRow, VersionStateRow
from modelreg.lifecycle import ModelState, Request, VersionState
from modelreg.policy import Role, Vote

_COLUMNS = list(VersionStateRow.__table__.columns)


def _state(row: Any) -> VersionState:
    """A VersionState from an ORM or Core row of ``version_state``."""
    request = None
    if row.request_id is not None:
        votes = tuple(Vote(v["actor"], Role(v["role"]), v["digest"]) for v in row.votes or [])
        request = Request(row.request_id, row.requester, votes)
    return VersionState(
        version=row.version,
        stage=Stage(row.stage) if row.stage else None,
        since=utc(row.since) if row.since else None,
        entered_staging=row.entered_staging,
        entered_production=row.entered_production,
        request=request,
    )


def _write(row: VersionStateRow, state: VersionState, event_id: int) -> None:
    row.stage = state.stage.value if state.stage else None
    row.since = state.since
    row.entered_staging = state.entered_staging
    row.entered_production = state.entered_production
    request = state.request
    row.request_id = request.id if request else None
    row.requester = request.actor if request else ""
    row.votes = [
        {"actor": v.actor, "role": v.role.value, "digest": v.digest}
        for v in (request.votes if request else ())
    ]
    row.last_event_id = event_id


def apply(session: Session, event: Event) -> None:
    """Apply one just-appended event to its version's row (inside the append's transaction)."""
    row = session.get(VersionStateRow, (event.model, event.version))
    if row is None:
        row = VersionStateRow(model=event.model, version=event.version)
        session.add(row)
        before = VersionState(event.version)
    else:
        before = _state(row)
    _write(row, before.after(event), event.id)
    # Reads in the same transaction (the holders after a promotion) select Core
    # columns, which do not autoflush: make the row visible to them now.
    session.flush()


def select_state(session: Session, model: str, versions: Collection[int] = ()) -> ModelState:
    """The part of ``model``'s state that planning a change needs: a few rows.

    The rows of ``versions``, every Production holder (normally one), the
    Staging alias holder and the two latest entries into Production (the
    rollback target), each through an index.
    """
    table = VersionStateRow
    # Separate queries, each answered by an index (an OR of the two scanned the model).
    rows = list(
        session.execute(
            select(*_COLUMNS).where(table.model == model, table.stage == Stage.PRODUCTION.value)
        )
    )
    if versions:
        rows += session.execute(
            select(*_COLUMNS).where(table.model == model, table.version.in_(list(versions)))
        )
    rows += session.execute(
        select(*_COLUMNS)
        .where(table.model == model, table.stage == Stage.STAGING.value)
        # As the fold: a row without an entry counts as the oldest (PostgreSQL would
        # sort NULL first in a plain DESC).
        .order_by(table.entered_staging.desc().nulls_last())
        .limit(1)
    )
    rows += session.execute(
        select(*_COLUMNS)
        .where(table.model == model, table.entered_production.is_not(None))
        .order_by(table.entered_production.desc())
        .limit(2)
    )
    return ModelState({row.version: _state(row) for row in rows})


def select_model_state(session: Session, model: str) -> ModelState:
    """Every version's row of ``model`` (doctor, whole-model views)."""
    query = select(*_COLUMNS).where(VersionStateRow.model == model)
    return ModelState({row.version: _state(row) for row in session.execute(query)})


def select_holders(session: Session) -> dict[str, ModelState]:
    """Per model, the rows of versions in Production or Staging (the model list)."""
    query = select(*_COLUMNS).where(
        VersionStateRow.stage.in_([Stage.PRODUCTION.value, Stage.STAGING.value])
    )
    found: dict[str, dict[int, VersionState]] = {}
    for row in session.execute(query):
        found.setdefault(row.model, {})[row.version] = _state(row)
    return {model: ModelState(versions) for model, versions in found.items()}


def select_in_stage(session: Session, stage: Stage, limit: int) -> list[tuple[str, int]]:
    """Up to ``limit`` (model, version) pairs in ``stage`` across models, in order."""
    query = (
        select(VersionStateRow.model, VersionStateRow.version)
        .where(VersionStateRow.stage == stage.value)
        .order_by(VersionStateRow.model, VersionStateRow.version)
        .limit(limit)
    )
    return [(model, version) for model, version in session.execute(query)]


def _events(session: Session, model: str | None) -> dict[str, list[Event]]:
    query = select(*EventRow.__table__.columns).order_by(EventRow.id)
    if model is not None:
        query = query.where(EventRow.model == model)
    by_model: dict[str, list[Event]] = {}
    for row in session.execute(query):
        by_model.setdefault(row.model, []).append(event_of(row))
    return by_model


def disagreements(session: Session, model: str) -> list[int]:
    """Versions of ``model`` whose projected state differs from the fold over its events."""
    truth = ModelState.fold(_events(session, model).get(model, [])).versions
    projected = select_model_state(session, model).versions
    return sorted(v for v in truth.keys() | projected.keys() if truth.get(v) != projected.get(v))


def rebuild(session: Session, model: str | None = None) -> int:
    """Re-derive the rows of ``model`` (or of every model) from the events; rows written."""
    statement = delete(VersionStateRow)
    if model is not None:
        statement = statement.where(VersionStateRow.model == model)
    session.execute(statement)
    written = 0
    for name, events in _events(session, model).items():
        last = {e.version: e.id for e in events}
        for version, state in ModelState.fold(events).versions.items():
            row = VersionStateRow(model=name, version=version)
            _write(row, state, last[version])
            session.add(row)
            written += 1
    return written
