"""Alembic environment: runs on the connection handed over by ``db.migrate``."""

from alembic import context

from db.migrate import VERSION_TABLE
from db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("hilnas migrations run through db.migrate.upgrade_to_head or `hilnas db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
