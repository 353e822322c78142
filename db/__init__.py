"""The SQL store: every result of hilnas lands here, and the dashboard reads only from here.

Use ``db.session.session_scope()`` for a transaction; the schema is migrated with Alembic on first
use. Tables carry an ``hilnas_`` prefix because Optuna's own tables share the same database.
"""

from db.models import Artifact, Base, HypervolumePoint, Measurement, Search, Trial
from db.session import get_engine, session_scope

__all__ = [
    "Artifact",
    "Base",
    "HypervolumePoint",
    "Measurement",
    "Search",
    "Trial",
    "get_engine",
    "session_scope",
]
