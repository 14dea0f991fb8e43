"""Remember MLflow webhook delivery ids, so a replayed signed request is acted on once.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlflow_deliveries",
        sa.Column("delivery_id", sa.String(128), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_mlflow_deliveries_expires", "mlflow_deliveries", ["expires_at"])


def downgrade() -> None:
    op.drop_table("mlflow_deliveries")
