"""Engines and transactions for the store, with the schema migrated on first use.

SQLite runs in WAL mode so the dashboard can read while the driver writes; any other URL
(PostgreSQL for clusters) is used as given. A store that cannot be reached when an engine is first
created is a ``UserError``; one that drops out later (a database restart, a network blip between a
cluster and its PostgreSQL) is waited for by ``retry_transient``, so a long search loses nothing.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade_to_head
from hilnas.errors import UserError
from hilnas.settings import get_settings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()
log = logging.getLogger("hilnas.db")
T = TypeVar("T")

#: How long a running job keeps retrying a store that dropped out, and the first and longest pause between tries.
RETRY_WINDOW_S = 120.0
RETRY_FIRST_PAUSE_S = 0.25
RETRY_MAX_PAUSE_S = 5.0


#: libpq TCP keepalives: a connection whose server vanished without a word fails in about 20 s instead of hanging.
POSTGRES_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3}


class StoreUnavailable(UserError):
    """The store stayed unreachable for the whole retry window; what was committed before is intact."""


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and ``hilnas doctor``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI objects are untyped
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a process crash in WAL mode (only an OS crash can lose the tail).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _finite(value: object) -> object:
    """``value`` with NaN and infinities as None: PostgreSQL's JSON has no token for them (a Kendall tau over
    one held-out point is NaN), SQLite's would store text no JSON reader accepts, and a figure that could
    not be computed is what they mean."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def json_dumps(value: object) -> str:
    """How every JSON column is written, on every backend."""
    return json.dumps(_finite(value), allow_nan=False)


def _create_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(f"The database URL {url!r} is not a valid SQLAlchemy URL.") from exc
    kwargs: dict = {"future": True, "json_serializer": json_dumps}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 5}
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"].update(POSTGRES_KEEPALIVES)
    try:
        engine = create_engine(url, **kwargs)
    except Exception as exc:  # missing driver, bad options
        raise UserError(f"Cannot open the database at {redact_url(url)}: {_first_line(exc)}.") from exc
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        raise UserError(f"Cannot reach the database at {redact_url(url)}: {_first_line(exc.orig)}.") from exc
    return engine


def _first_line(exc: BaseException | None) -> str:
    message = str(exc or "unknown error").strip().splitlines()
    return message[0].rstrip(".") if message else "unknown error"


def get_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """The engine for ``url`` (default: ``HILNAS_DB_URL``), created once per process and migrated."""
    url = url or get_settings().db_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            if migrate:
                upgrade_to_head(engine)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, and before forking worker processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def retry_transient(work: Callable[[], T], url: str | None = None, window_s: float = RETRY_WINDOW_S) -> T:
    """Run ``work`` (whole transactions), re-running it with backoff while the store is unreachable.

    Only an ``OperationalError`` (lost or refused connections, a locked SQLite file) is retried, also
    when a library wrapped it (Optuna raises ``StorageInternalError`` from it). A transaction that
    failed was rolled back, so re-running it is safe; ``work`` must also be safe to re-run when a
    commit went through but its acknowledgement was lost (the recorder's and the mirror's writes are).
    """
    deadline = time.monotonic() + window_s
    pause = RETRY_FIRST_PAUSE_S
    while True:
        try:
            return work()
        except Exception as exc:
            cause = _operational_cause(exc)
            if cause is None:
                raise
            if time.monotonic() + pause > deadline:
                where = redact_url(url or get_settings().db_url)
                raise StoreUnavailable(
                    f"The database at {where} stayed unreachable for {window_s:g} s: {_first_line(cause.orig)}."
                ) from exc
            log.warning("database unreachable (%s); retrying in %.2g s", _first_line(cause.orig), pause)
            time.sleep(pause)
            pause = min(2 * pause, RETRY_MAX_PAUSE_S)


def _operational_cause(exc: BaseException | None) -> OperationalError | None:
    """The ``OperationalError`` that ``exc`` is, or was explicitly raised from (``raise ... from``)."""
    while exc is not None:
        if isinstance(exc, OperationalError):
            return exc
        exc = exc.__cause__
    return None


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    factory = sessionmaker(bind=get_engine(url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
