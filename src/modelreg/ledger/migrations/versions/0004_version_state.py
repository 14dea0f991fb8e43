"""Add the version_state projection (Ledger.migrate fills it from old events); index events.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "version_state",
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("stage", sa.String(16)),
        sa.Column("since", sa.DateTime(timezone=True)),
        sa.Column("entered_staging", _EVENT_ID),
        sa.Column("entered_production", _EVENT_ID),
        sa.Column("request_id", _EVENT_ID),
        sa.Column("requester", sa.String(256), nullable=False, server_default=""),
        sa.Column("votes", sa.JSON, nullable=False),
        sa.Column("last_event_id", _EVENT_ID, nullable=False),
    )
    op.create_index(
        "ix_version_state_model_stage", "version_state", ["model", "stage", "entered_staging"]
    )
    op.create_index("ix_version_state_stage", "version_state", ["stage", "model", "version"])
    op.create_index("ix_events_model_version_id", "events", ["model", "version", "id"])
    op.create_index(
        "ix_version_state_model_production", "version_state", ["model", "entered_production"]
    )
    # A ledger that already has events gets its rows from Ledger.migrate() right after
    # the upgrade, folded by the code that reads them (not frozen into this migration).


def downgrade() -> None:
    op.drop_index("ix_events_model_version_id", "events")
    op.drop_table("version_state")
