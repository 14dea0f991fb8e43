"""Mapping ledger rows to values, and the dialect-specific inserts (PostgreSQL or SQLite).

The one place that knows SQLite returns naive datetimes and that each dialect
spells ``ON CONFLICT`` with its own insert construct.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from modelreg.domain import Action, Event, Stage


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite hands back naive ones; all stored are UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def event_of(row: Any) -> Event:
    """An Event from an ORM row or a Core row with the ``events`` column names."""
    return Event(
        id=row.id,
        model=row.model,
        version=row.version,
        action=Action(row.action),
        actor=row.actor,
        at=utc(row.at),
        from_stage=Stage(row.from_stage) if row.from_stage else None,
        to_stage=Stage(row.to_stage) if row.to_stage else None,
        reason=row.reason,
        semver=row.semver,
        digest=row.digest,
        details=dict(row.details or {}),
    )


def dialect_insert(session: Session, table: type[Any]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` that can take ``ON CONFLICT`` clauses on this session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignoring_duplicates(session: Session, table: type[Any]) -> Insert:
    """An INSERT into ``table`` that skips rows whose key is already there."""
    return dialect_insert(session, table).on_conflict_do_nothing()
