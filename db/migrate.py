"""Alembic migrations, run programmatically so that users never have to call Alembic by hand.

hilnas keeps its revision in its own version table: Optuna, which shares the database, keeps
its schema version in the default ``alembic_version`` table.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

VERSION_TABLE = "hilnas_alembic_version"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x68696C6E6173  # "hilnas": the PostgreSQL advisory lock held while migrating


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine`` (the connection is passed through ``attributes``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return set(context.get_current_heads())


def head_revisions(engine: Engine) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())


def sqlite_lock_path(database: str) -> Path:
    """The file whose flock one migrating process holds: ``store.db`` -> ``store.db.migrate-lock``."""
    return Path(f"{database}.migrate-lock")


@contextmanager
def _one_migrator(engine: Engine) -> Iterator[None]:
    """Hold the store's migration lock: two processes opening a new store at once (a search and the dashboard
    polling it) would otherwise both create its tables, and the second would fail."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        # A file beside the store, never the store itself: closing any descriptor of the store drops every
        # POSIX lock SQLite holds on it in this process. Another process then takes itself for the store's
        # last user, removes the WAL on exit, and this process goes on reading a stale snapshot.
        with open(sqlite_lock_path(engine.url.database), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
    else:
        yield


def upgrade_to_head(engine: Engine) -> bool:
    """Apply pending migrations; returns True when anything was applied (False when another process did)."""
    heads = head_revisions(engine)
    if current_revisions(engine) == heads:
        return False
    with _one_migrator(engine):
        if current_revisions(engine) == heads:
            return False
        config = alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "heads")
    return True
