"""Alembic environment: migrations always run on a connection the ledger hands in."""

from alembic import context

from modelreg.ledger.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
