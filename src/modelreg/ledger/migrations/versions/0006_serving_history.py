"""Add the experiment counts' time series, what serving replicas report, a feedback index.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiment_count_samples",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("replica", sa.String(128), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("minute", sa.BigInteger, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency", sa.JSON, nullable=False),
    )
    op.create_table(
        "replica_slots",
        sa.Column("replica", sa.String(128), primary_key=True),
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("alias", sa.String(256)),
        sa.Column("version", sa.Integer),
        sa.Column("semver", sa.String(64)),
        sa.Column("digest", sa.String(80)),
        sa.Column("since", sa.DateTime(timezone=True)),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_replica_slots_reported", "replica_slots", ["reported_at"])
    op.create_table(
        "replica_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_replica_events_at", "replica_events", ["at"])
    op.create_index("ix_replica_events_model", "replica_events", ["model", "at"])
    op.create_index("ix_predictions_feedback", "predictions", ["experiment_id", "feedback_at"])


def downgrade() -> None:
    op.drop_index("ix_predictions_feedback", "predictions")
    op.drop_index("ix_replica_events_model", "replica_events")
    op.drop_index("ix_replica_events_at", "replica_events")
    op.drop_table("replica_events")
    op.drop_index("ix_replica_slots_reported", "replica_slots")
    op.drop_table("replica_slots")
    op.drop_table("experiment_count_samples")
