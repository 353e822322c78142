"""The declarative base shared by all hilnas tables."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> datetime:
    """Timezone-aware now; stored as UTC in every table."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Base class; ``dict`` and ``list`` columns map to JSON on SQLite and PostgreSQL alike."""

    type_annotation_map = {dict: JSON, list: JSON}
