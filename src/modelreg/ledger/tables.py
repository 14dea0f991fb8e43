"""SQLAlchemy tables of the governance ledger.

``events`` is append-only: rows are inserted, never updated or deleted. The
``versions`` table holds facts fixed at registration (semver, manifest, digest,
lineage completeness); they never change either, which is what makes versions
immutable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit id.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the ledger tables."""


class EventRow(Base):
    """One lifecycle or registration event."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    actor: Mapped[str] = mapped_column(String(256), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    semver: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    digest: Mapped[str] = mapped_column(String(80), nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)

    __table_args__ = (Index("ix_events_model_id", "model", "id"),)


class VersionRow(Base):
    """Facts recorded once when a version is registered or adopted."""

    __tablename__ = "versions"

    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    semver: Mapped[str] = mapped_column(String(128), nullable=False)
    major: Mapped[int] = mapped_column(Integer, nullable=False)
    minor: Mapped[int] = mapped_column(Integer, nullable=False)
    patch: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[str] = mapped_column(String(80), nullable=False)
    manifest: Mapped[str] = mapped_column(Text, nullable=False)
    run_id: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    source: Mapped[str] = mapped_column(Text, nullable=False, default="")
    lineage_complete: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    lineage_missing: Mapped[str] = mapped_column(Text, nullable=False, default="")
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    lineage: Mapped[str] = mapped_column(Text, nullable=False, default="")
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    registered_by: Mapped[str] = mapped_column(String(256), nullable=False)

    __table_args__ = (
        # Two versions of one model can never share a semver core.
        Index("ux_versions_semver", "model", "major", "minor", "patch", unique=True),
    )
