"""SQLAlchemy tables of the governance ledger.

``events`` is append-only: rows are inserted, never updated or deleted. The
``versions`` table holds facts fixed at registration (semver, manifest, digest,
lineage completeness); they never change either, which is what makes versions
immutable.

``version_state`` is a projection of ``events``: each version's current stage,
the ids of its latest entries into Staging and Production and its open
request, updated by every append in the same transaction, so hot paths read
a constant number of rows whatever the history length. The fold over events
stays the truth: ``doctor`` compares the two and rebuilds a projection that
disagrees.

``outbox`` gets one row per event, written in the event's transaction, so an
event and its notification commit or vanish together. ``webhook_cursors`` and
``webhook_deliveries`` record how far each webhook subscriber has been fanned
out and the fate of every delivery; deliveries change status but are never
deleted. ``mlflow_deliveries`` remembers the ids of MLflow webhook requests
while their signatures are fresh, so each is acted on once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
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

    __table_args__ = (
        Index("ix_events_model_id", "model", "id"),
        # One version's events (approvals' checks, the audit of one version).
        Index("ix_events_model_version_id", "model", "version", "id"),
    )


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


class VersionStateRow(Base):
    """One version's current state, projected from its events (see ``ledger.state``)."""

    __tablename__ = "version_state"

    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str | None] = mapped_column(String(16))
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    entered_staging: Mapped[int | None] = mapped_column(EventId)
    entered_production: Mapped[int | None] = mapped_column(EventId)
    request_id: Mapped[int | None] = mapped_column(EventId)
    requester: Mapped[str] = mapped_column(String(256), nullable=False, default="")
    votes: Mapped[list[dict[str, str]]] = mapped_column(JSON, nullable=False, default=list)
    last_event_id: Mapped[int] = mapped_column(EventId, nullable=False)

    __table_args__ = (
        # Holders of a stage in one model (the Staging alias: latest entry first), and
        # of a stage across models in search order.
        Index("ix_version_state_model_stage", "model", "stage", "entered_staging"),
        Index("ix_version_state_stage", "stage", "model", "version"),
        Index("ix_version_state_model_production", "model", "entered_production"),
    )


class OutboxRow(Base):
    """One event as webhook subscribers see it, queued in the event's own transaction."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(EventId, ForeignKey("events.id"), nullable=False)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class WebhookCursorRow(Base):
    """The last outbox row a subscriber's deliveries have been created for."""

    __tablename__ = "webhook_cursors"

    subscriber: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_outbox_id: Mapped[int] = mapped_column(EventId, nullable=False)


class WebhookDeliveryRow(Base):
    """One outbox row to be sent to one subscriber, and how sending it went."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    subscriber: Mapped[str] = mapped_column(String(128), nullable=False)
    outbox_id: Mapped[int] = mapped_column(EventId, ForeignKey("outbox.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        # Two replicas fanning out the same outbox row create one delivery, not two.
        UniqueConstraint("subscriber", "outbox_id", name="ux_webhook_deliveries_subscriber_outbox"),
        # The dispatcher's hot query: pending rows that are due.
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )


class MlflowDeliveryRow(Base):
    """An MLflow webhook delivery acted on, kept until its signed timestamp is stale."""

    __tablename__ = "mlflow_deliveries"

    delivery_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # After this a replay fails the signature's freshness check, so the id can go.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_mlflow_deliveries_expires", "expires_at"),)


class ExperimentRow(Base):
    """One A/B experiment on a model: its arms, split and state; changed by its events."""

    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    control_version: Mapped[int] = mapped_column(Integer, nullable=False)
    control_alias: Mapped[str | None] = mapped_column(String(256))
    # [{"variant": "treatment", "version": 3}, ...]
    treatments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    traffic: Mapped[float] = mapped_column(Float, nullable=False)
    key_header: Mapped[str] = mapped_column(String(128), nullable=False)
    shadow: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    metrics: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    guardrails: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    started_by: Mapped[str] = mapped_column(String(256), nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    concluded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stop_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # One entry per start or ramp: {"traffic": share, "from_requests": requests counted
    # before it}; the expected split over a ramped experiment is their weighted mix.
    segments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)

    __table_args__ = (Index("ix_experiments_model_state", "model", "state", "started_at"),)


class ExperimentCountsRow(Base):
    """One serving replica's cumulative counts for one variant (replaced on every flush)."""

    __tablename__ = "experiment_counts"

    experiment_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    replica: Mapped[str] = mapped_column(String(128), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    requests: Mapped[int] = mapped_column(BigInteger, nullable=False)
    errors: Mapped[int] = mapped_column(BigInteger, nullable=False)
    missing_key: Mapped[int] = mapped_column(BigInteger, nullable=False)
    latency: Mapped[list[int]] = mapped_column(JSON, nullable=False)
    predictions: Mapped[int] = mapped_column(BigInteger, nullable=False)
    prediction_sum: Mapped[float] = mapped_column(Float, nullable=False)
    prediction_sumsq: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class PredictionRow(Base):
    """One logged prediction and the outcome fed back for it (the bounded prediction log).

    Past the retention the row is kept as a tombstone (``expired``) so feedback
    for it is answered 410, not 404; tombstones go after twice the retention.
    """

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    experiment_id: Mapped[str] = mapped_column(String(32), nullable=False)
    variant: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    prediction: Mapped[Any] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    label: Mapped[Any] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float)
    feedback_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expired: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        # A replica re-flushing a batch, or shadow scoring, never logs a request twice.
        UniqueConstraint(
            "request_id", "experiment_id", "variant", name="ux_predictions_request_variant"
        ),
        Index("ix_predictions_experiment", "experiment_id", "variant"),
        Index("ix_predictions_at", "at"),
        # What a report has not read yet: the feedback after the newest it has.
        Index("ix_predictions_feedback", "experiment_id", "feedback_at"),
    )


class CountsSampleRow(Base):
    """A replica's cumulative counts for one variant as of one minute (the counts' time series).

    ``minute`` is minutes since the Unix epoch (UTC); a replica's flushes
    within a minute replace the row, so it holds the last counts of that
    minute. Being cumulative, any subset of the samples still gives exact
    totals at their times, which is what lets pruning thin old minutes.
    """

    __tablename__ = "experiment_count_samples"

    experiment_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    replica: Mapped[str] = mapped_column(String(128), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    requests: Mapped[int] = mapped_column(BigInteger, nullable=False)
    errors: Mapped[int] = mapped_column(BigInteger, nullable=False)
    latency: Mapped[list[int]] = mapped_column(JSON, nullable=False)


class ReplicaSlotRow(Base):
    """What one serving replica serves in one slot (model and variant), as it last reported.

    Each report replaces the replica's rows; ``since`` is when the slot's
    current version finished loading in that replica.
    """

    __tablename__ = "replica_slots"

    replica: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    alias: Mapped[str | None] = mapped_column(String(256))
    version: Mapped[int | None] = mapped_column(Integer)
    semver: Mapped[str | None] = mapped_column(String(64))
    digest: Mapped[str | None] = mapped_column(String(80))
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reasons: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    experiment: Mapped[str | None] = mapped_column(String(32))
    experiment_revision: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_replica_slots_reported", "reported_at"),)


class ReplicaEventRow(Base):
    """A serving replica's reload or refused load of a version, as it reported it."""

    __tablename__ = "replica_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    replica: Mapped[str] = mapped_column(String(128), nullable=False)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    variant: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_replica_events_at", "at"),
        Index("ix_replica_events_model", "model", "at"),
    )
