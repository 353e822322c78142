"""The search driver against truth and faults: ZDT/DTLZ fronts, retries, timeouts, constraints."""

from __future__ import annotations

import os
import signal

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import select

from db.models import HypervolumePoint, Search, Trial
from db.session import session_scope
from hilnas.errors import Interrupted
from search.driver import Progress, SearchDriver
from search.families.benchmarks.problems import true_hypervolume
from search.spec import parse_spec
from search.study import NUMBER_ATTR, optuna_storage

pytestmark = pytest.mark.usefixtures("ray_local")


def _spec(**overrides) -> dict:
    spec = {
        "name": "t",
        "family": "moo-benchmark",
        "options": {"problem": "zdt1", "n_var": 2},
        "sampler": {"name": "tpe", "seed": 0},
        "budget": {"trials": 12, "batch_size": 4, "max_concurrency": 2, "trial_timeout_s": 60, "max_retries": 1},
    }
    spec.update(overrides)
    return spec


def _trials(db_url: str, search_id: int) -> list[Trial]:
    with session_scope(db_url) as session:
        return list(session.scalars(select(Trial).where(Trial.search_id == search_id).order_by(Trial.number)))


@pytest.mark.parametrize(
    ("problem", "n_obj", "target"),
    [("zdt1", 2, 0.85), ("zdt2", 2, 0.15), ("zdt3", 2, 0.7), ("dtlz2", 2, 0.9)],
)
def test_search_reaches_its_hypervolume_target(sqlite_url: str, problem: str, n_obj: int, target: float) -> None:
    """Two-variable problems, TPE with a fixed seed, 100 trials, one at a time so the run is reproducible.

    The targets sit just under what this seed reaches (0.895, 0.191, 0.768, 0.960 of the true
    hypervolume); TPE finds ZDT2's concave front hard in 100 trials. A broken front, hypervolume or
    tell would land far off, or above 1.
    """
    spec = parse_spec(
        _spec(
            options={"problem": problem, "n_var": 2, "n_obj": n_obj},
            budget={"trials": 100, "batch_size": 4, "max_concurrency": 1},
        )
    )
    result = SearchDriver.start(spec, sqlite_url).run()
    ratio = result.hypervolume / true_hypervolume(problem, n_obj)
    assert target <= ratio <= 1.0 + 1e-9
    with session_scope(sqlite_url) as session:
        search = session.get(Search, result.search_id)
        assert search.status == "finished" and search.reference_point == [1.1, 1.1]
        history = session.scalars(
            select(HypervolumePoint.hypervolume)
            .where(HypervolumePoint.search_id == result.search_id)
            .order_by(HypervolumePoint.n_finished)
        ).all()
    assert history == sorted(history)  # the front only ever improves
    assert history[-1] == pytest.approx(result.hypervolume)


def test_pareto_flags_match_optuna_best_trials(sqlite_url: str) -> None:
    spec = parse_spec(_spec(budget={"trials": 30, "batch_size": 6, "max_concurrency": 2}))
    result = SearchDriver.start(spec, sqlite_url).run()
    study = optuna.load_study(study_name=f"hilnas-search-{result.search_id}", storage=optuna_storage(sqlite_url))
    expected = {t.user_attrs[NUMBER_ATTR] for t in study.best_trials}  # Optuna numbers follow finishing order
    assert {t.number for t in _trials(sqlite_url, result.search_id) if t.is_pareto} == expected
    assert len(study.trials) == 30


def test_raising_trial_is_retried_then_recorded_failed(sqlite_url: str) -> None:
    faults = [
        {"kind": "raise", "trials": [1], "attempts": 5},  # fails every attempt
        {"kind": "raise", "trials": [2], "attempts": 1},  # fails once, then succeeds
    ]
    spec = parse_spec(_spec(options={"problem": "zdt1", "n_var": 2, "faults": faults}))
    result = SearchDriver.start(spec, sqlite_url).run()
    trials = {t.number: t for t in _trials(sqlite_url, result.search_id)}
    assert result.finished == 12 and result.failed == 1
    assert trials[1].state == "failed" and trials[1].attempts == 2
    assert "RuntimeError: injected fault in trial 1" in trials[1].error
    assert trials[2].state == "complete" and trials[2].attempts == 2
    study = optuna.load_study(study_name=f"hilnas-search-{result.search_id}", storage=optuna_storage(sqlite_url))
    states = {t.user_attrs[NUMBER_ATTR]: t.state for t in study.trials}
    assert states[1] == TrialState.FAIL and states[2] == TrialState.COMPLETE


def test_ctrl_c_with_the_last_trial_finishes_the_search_and_still_reaches_the_caller(sqlite_url: str) -> None:
    def interrupt_at_the_end(progress: Progress) -> None:
        if progress.finished == progress.target:
            os.kill(os.getpid(), signal.SIGINT)

    driver = SearchDriver.start(parse_spec(_spec()), sqlite_url)
    with pytest.raises(Interrupted, match="finished its 12 trials as it was interrupted"):
        driver.run(on_progress=interrupt_at_the_end)
    with session_scope(sqlite_url) as session:
        assert session.get(Search, driver.search_id).status == "finished"
    assert len(_trials(sqlite_url, driver.search_id)) == 12


def test_crashed_worker_is_retried(sqlite_url: str) -> None:
    spec = parse_spec(_spec(options={"problem": "zdt1", "n_var": 2, "faults": [{"kind": "crash", "trials": [0]}]}))
    result = SearchDriver.start(spec, sqlite_url).run()
    trial0 = _trials(sqlite_url, result.search_id)[0]
    assert trial0.state == "complete" and trial0.attempts == 2
    assert result.finished == 12 and result.failed == 0


def test_hanging_trial_times_out_and_fails(sqlite_url: str) -> None:
    spec = parse_spec(
        _spec(
            options={"problem": "zdt1", "n_var": 2, "faults": [{"kind": "hang", "trials": [0], "attempts": 9}]},
            budget={"trials": 4, "batch_size": 4, "max_concurrency": 2, "trial_timeout_s": 2, "max_retries": 0},
        )
    )
    result = SearchDriver.start(spec, sqlite_url).run()
    trial0 = _trials(sqlite_url, result.search_id)[0]
    assert trial0.state == "failed" and "TimeoutError" in trial0.error
    assert result.finished == 4


def test_constraints_mark_infeasible_trials_and_keep_them_off_the_front(sqlite_url: str) -> None:
    spec = parse_spec(_spec(constraints=[{"metric": "f1", "min": 0.3}], budget={"trials": 20, "max_concurrency": 2}))
    result = SearchDriver.start(spec, sqlite_url).run()
    trials = [t for t in _trials(sqlite_url, result.search_id) if t.state == "complete"]
    for trial in trials:
        assert trial.feasible == (trial.values["f1"] >= 0.3)
    assert any(not t.feasible for t in trials) and any(t.feasible for t in trials)
    assert all(t.feasible for t in trials if t.is_pareto)


def test_search_runs_on_sqlite_and_postgresql(db_url: str) -> None:
    spec = parse_spec(_spec(budget={"trials": 8, "batch_size": 4, "max_concurrency": 2}))
    result = SearchDriver.start(spec, db_url).run()
    assert len([t for t in _trials(db_url, result.search_id) if t.state == "complete"]) == 8
    study = optuna.load_study(study_name=f"hilnas-search-{result.search_id}", storage=optuna_storage(db_url))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 8
