"""Mapping ledger rows to values: the one place that knows SQLite returns naive datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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
