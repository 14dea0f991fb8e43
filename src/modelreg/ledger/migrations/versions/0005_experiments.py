"""Add A/B experiments, their per-replica counts and the prediction log.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("control_version", sa.Integer, nullable=False),
        sa.Column("control_alias", sa.String(256)),
        sa.Column("treatments", sa.JSON, nullable=False),
        sa.Column("traffic", sa.Float, nullable=False),
        sa.Column("key_header", sa.String(128), nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("guardrails", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("started_by", sa.String(256), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
        sa.Column("concluded_at", sa.DateTime(timezone=True)),
        sa.Column("stop_reason", sa.Text, nullable=False),
        sa.Column("verdict", sa.JSON),
        sa.Column("segments", sa.JSON, nullable=False),
    )
    op.create_index("ix_experiments_model_state", "experiments", ["model", "state", "started_at"])
    op.create_table(
        "experiment_counts",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("replica", sa.String(128), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("missing_key", sa.BigInteger, nullable=False),
        sa.Column("latency", sa.JSON, nullable=False),
        sa.Column("predictions", sa.BigInteger, nullable=False),
        sa.Column("prediction_sum", sa.Float, nullable=False),
        sa.Column("prediction_sumsq", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("prediction", sa.JSON),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label", sa.JSON),
        sa.Column("value", sa.Float),
        sa.Column("feedback_at", sa.DateTime(timezone=True)),
        sa.Column("expired", sa.Boolean, nullable=False),
        sa.UniqueConstraint(
            "request_id", "experiment_id", "variant", name="ux_predictions_request_variant"
        ),
    )
    op.create_index("ix_predictions_experiment", "predictions", ["experiment_id", "variant"])
    op.create_index("ix_predictions_at", "predictions", ["at"])


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("experiment_counts")
    op.drop_index("ix_experiments_model_state", "experiments")
    op.drop_table("experiments")
