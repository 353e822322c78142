"""A search killed with SIGKILL mid-run resumes to exactly its budget: nothing lost, nothing repeated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from sqlalchemy import select

from db.models import Search, Trial
from db.session import dispose_engines, session_scope
from search.study import NUMBER_ATTR, optuna_storage

TRIALS = 24


def _finished(db_url: str) -> dict[int, dict]:
    with session_scope(db_url) as session:
        rows = session.scalars(select(Trial).where(Trial.state.in_(("complete", "failed", "invalid"))))
        return {t.number: t.values for t in rows}


def _hilnas(*args: str, db_url: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, HILNAS_DB_URL=db_url)
    return subprocess.Popen(
        [sys.executable, "-m", "hilnas", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _wait_for_finished(db_url: str, count: int, process: subprocess.Popen) -> dict[int, dict]:
    """Poll the store (as the dashboard would) until ``count`` trials have finished."""
    deadline = time.monotonic() + 180
    done: dict[int, dict] = {}
    while time.monotonic() < deadline and len(done) < count:
        time.sleep(0.5)
        assert process.poll() is None, process.stdout.read()
        try:
            done = _finished(db_url)
        except Exception:  # the schema may not exist yet in the first instants
            dispose_engines()
    return done


def test_sigkilled_search_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'kill.db'}"
    spec = {
        "name": "killed",
        "family": "moo-benchmark",
        "options": {"problem": "zdt1", "n_var": 2, "work_ms": 300},
        "sampler": {"name": "nsga2", "seed": 1, "population_size": 8},
        "budget": {"trials": TRIALS, "batch_size": 4, "max_concurrency": 2},
    }
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))

    # The driver and the Ray instance it starts share one session, so killpg is a whole-machine crash.
    driver = _hilnas("search", "run", str(spec_path), "--no-progress", db_url=db_url, start_new_session=True)
    before = _wait_for_finished(db_url, 6, driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    assert 6 <= len(before) < TRIALS, "the search must be killed mid-run"
    dispose_engines()
    before = _finished(db_url)  # what survived the kill

    with session_scope(db_url) as session:
        search_id = session.scalars(select(Search.id)).one()
        assert session.get(Search, search_id).status == "running"  # it never got to say otherwise

    resumed = _hilnas("search", "resume", str(search_id), "--no-progress", db_url=db_url)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output

    dispose_engines()
    with session_scope(db_url) as session:
        rows = list(session.scalars(select(Trial).where(Trial.search_id == search_id)))
        assert session.get(Search, search_id).status == "finished"
    numbers = [t.number for t in rows]
    assert len(numbers) == len(set(numbers)) == TRIALS
    assert all(t.state == "complete" for t in rows)
    after = {t.number: t.values for t in rows}
    assert all(after[n] == values for n, values in before.items())  # finished trials untouched

    mirror = optuna.load_study(study_name=f"hilnas-search-{search_id}", storage=optuna_storage(db_url))
    mirrored = [t.user_attrs[NUMBER_ATTR] for t in mirror.get_trials()]
    assert sorted(mirrored) == sorted(numbers)  # Optuna's copy holds each finished trial exactly once


def test_ctrl_c_stops_cleanly_and_the_search_resumes(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'sigint.db'}"
    spec = {
        "name": "interrupted",
        "family": "moo-benchmark",
        "options": {"problem": "zdt2", "n_var": 2, "work_ms": 300},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"trials": 12, "batch_size": 2, "max_concurrency": 2},
    }
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    driver = _hilnas("search", "run", str(spec_path), "--no-progress", db_url=db_url)
    _wait_for_finished(db_url, 3, driver)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, output
    assert "was interrupted after" in output and "hilnas search resume 1" in output
    assert "Traceback" not in output
    dispose_engines()
    with session_scope(db_url) as session:
        assert session.get(Search, 1).status == "interrupted"
    mirror = optuna.load_study(study_name="hilnas-search-1", storage=optuna_storage(db_url))
    assert sorted(t.user_attrs[NUMBER_ATTR] for t in mirror.get_trials()) == sorted(_finished(db_url))  # no lag left
    resumed = _hilnas("search", "resume", "1", "--no-progress", db_url=db_url)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    dispose_engines()
    assert len(_finished(db_url)) == 12
