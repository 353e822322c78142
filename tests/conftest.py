"""Shared fixtures: a fresh store per test (SQLite, and PostgreSQL when one is configured) and Ray.

PostgreSQL tests run when ``HILNAS_TEST_PG_URL`` points at a server (``.ci/run`` starts one); each
test gets its own database there, created and dropped around it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.session import dispose_engines

# Drift references' first baselines are measured at once, not watched for 20 s (Ray workers inherit this too).
os.environ.setdefault("HILNAS_BASELINE_SPAN_S", "0")
REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"
PG_URL_ENV = "HILNAS_TEST_PG_URL"


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test writes its store and artifacts under its own temporary folder."""
    from hilnas.settings import get_settings

    monkeypatch.setenv("HILNAS_DB_URL", f"sqlite:///{tmp_path / 'hilnas.db'}")
    monkeypatch.setenv("HILNAS_ARTIFACT_DIR", str(tmp_path / "runs"))
    get_settings.cache_clear()
    yield
    dispose_engines()
    get_settings.cache_clear()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the server named by HILNAS_TEST_PG_URL."""
    base = os.environ.get(PG_URL_ENV)
    if not base:
        pytest.skip(f"{PG_URL_ENV} is not set (CI starts PostgreSQL and sets it)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"hilnas_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    yield url
    dispose_engines()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance for the whole session, offering the default device resource."""
    import ray

    from search.executor import connect_ray

    connect_ray(None, ["local-cpu"], num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED_DIR.exists():
        pytest.skip("../shared is absent (it ships beside the repository in development and CI only)")
    return SHARED_DIR
