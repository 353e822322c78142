"""A search killed with SIGKILL mid-run resumes to exactly its budget: nothing lost, nothing repeated."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import optuna
import yaml
from sqlalchemy import select

from db.models import Search, Trial
from db.session import dispose_engines, session_scope
from search.study import NUMBER_ATTR, optuna_storage
from tests.cli_support import finished_trials, hilnas_process, wait_for_finished

TRIALS = 24


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
    driver = hilnas_process("search", "run", str(spec_path), "--no-progress", db_url=db_url, start_new_session=True)
    before = wait_for_finished(db_url, 6, driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    assert 6 <= len(before) < TRIALS, "the search must be killed mid-run"
    dispose_engines()
    before = finished_trials(db_url)  # what survived the kill

    with session_scope(db_url) as session:
        search_id = session.scalars(select(Search.id)).one()
        assert session.get(Search, search_id).status == "running"  # it never got to say otherwise

    resumed = hilnas_process("search", "resume", str(search_id), "--no-progress", db_url=db_url)
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
    driver = hilnas_process("search", "run", str(spec_path), "--no-progress", db_url=db_url)
    wait_for_finished(db_url, 3, driver)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, output
    assert "was interrupted after" in output and "hilnas search resume 1" in output
    assert "Traceback" not in output
    dispose_engines()
    with session_scope(db_url) as session:
        assert session.get(Search, 1).status == "interrupted"
    mirror = optuna.load_study(study_name="hilnas-search-1", storage=optuna_storage(db_url))
    mirrored = sorted(t.user_attrs[NUMBER_ATTR] for t in mirror.get_trials())
    assert mirrored == sorted(finished_trials(db_url))  # no lag left
    resumed = hilnas_process("search", "resume", "1", "--no-progress", db_url=db_url)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    dispose_engines()
    assert len(finished_trials(db_url)) == 12
