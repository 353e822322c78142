"""The ``hilnas`` CLI in a child process, and polling the store for finished trials as the dashboard would:
shared by the tests that kill or interrupt a run and resume it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from sqlalchemy import select

from db.models import Trial
from db.session import dispose_engines, session_scope
from search.recorder import FINISHED_STATES


def hilnas_process(*args: str, db_url: str, **kwargs: object) -> subprocess.Popen:
    """``python -m hilnas ARGS`` on the store ``db_url``, stdout and stderr together."""
    return subprocess.Popen(
        [sys.executable, "-m", "hilnas", *args],
        env=dict(os.environ, HILNAS_DB_URL=db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def finished_trials(db_url: str) -> dict[int, dict | None]:
    """Every finished trial's number and values."""
    with session_scope(db_url) as session:
        return {t.number: t.values for t in session.scalars(select(Trial).where(Trial.state.in_(FINISHED_STATES)))}


def wait_for_finished(
    db_url: str, count: int, process: subprocess.Popen, timeout_s: float = 180
) -> dict[int, dict | None]:
    """Poll the store until ``count`` trials have finished; fails if ``process`` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    done: dict[int, dict | None] = {}
    while time.monotonic() < deadline and len(done) < count:
        time.sleep(0.5)
        assert process.poll() is None, process.stdout.read()
        try:
            done = finished_trials(db_url)
        except Exception:  # the schema may not exist yet in the first instants
            dispose_engines()
    assert len(done) >= count, f"only {len(done)} of {count} trials finished within {timeout_s:.0f} s"
    return done
