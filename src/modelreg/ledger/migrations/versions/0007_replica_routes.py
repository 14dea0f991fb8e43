"""Record which experiment revision each serving replica routes by (`ab ... --wait`).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replica_slots") as batch:
        batch.add_column(sa.Column("experiment", sa.String(32)))
        batch.add_column(sa.Column("experiment_revision", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("replica_slots") as batch:
        batch.drop_column("experiment_revision")
        batch.drop_column("experiment")
