"""The SQL store on SQLite and PostgreSQL: migrations, round trips and clear errors."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy import inspect, select

from db.migrate import current_revisions, head_revisions, upgrade_to_head
from db.models import Artifact, HypervolumePoint, Measurement, Search, Trial
from db.session import get_engine, session_scope
from hilnas.errors import UserError
from search.study import StudyMirror, finished_trial, optuna_storage


def _search(**overrides) -> Search:
    fields = dict(
        name="s",
        family="moo-benchmark",
        spec={"name": "s", "family": "moo-benchmark"},
        objectives=[{"name": "f1", "direction": "minimize"}],
        optuna_study_name="study-s",
        n_trials_target=3,
    )
    fields.update(overrides)
    return Search(**fields)


def test_schema_is_migrated_on_first_use(db_url: str) -> None:
    engine = get_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert {"hilnas_searches", "hilnas_trials", "hilnas_measurements", "hilnas_artifacts"} <= tables
    assert current_revisions(engine) == head_revisions(engine)
    assert upgrade_to_head(engine) is False  # idempotent


def test_processes_opening_a_new_store_at_once_migrate_it_once(db_url: str) -> None:
    # Without the migration lock, most of six processes failed here with "table ... already exists".
    code = f"from db.session import get_engine; get_engine({db_url!r})"
    children = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    failures = [err for child in children if (err := child.communicate(timeout=120)[1]) and child.returncode != 0]
    assert failures == []
    engine = get_engine(db_url)
    assert current_revisions(engine) == head_revisions(engine)


def test_a_process_that_migrated_a_store_sees_what_another_process_writes_later(sqlite_url: str) -> None:
    # The migration lock once opened and closed the store file itself, which dropped this process's SQLite
    # locks: the first writer below then removed the WAL on exit, and this process never saw the second's row.
    get_engine(sqlite_url)
    for name in ("first", "second"):
        code = (
            "from db.session import session_scope; from tests.test_store import _search\n"
            f"with session_scope({sqlite_url!r}) as s: s.add(_search(name={name!r}, optuna_study_name={name!r}))"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
        with session_scope(sqlite_url) as session:
            assert name in session.scalars(select(Search.name)).all()


def test_round_trip_of_every_core_table(db_url: str) -> None:
    with session_scope(db_url) as session:
        search = _search()
        session.add(search)
        session.flush()
        trial = Trial(search_id=search.id, number=0, params={"layers": [1, 2]}, values={"f1": 0.5}, state="complete")
        session.add(trial)
        session.flush()
        session.add(
            Measurement(
                search_id=search.id,
                trial_id=trial.id,
                arch_hash="abc",
                architecture={"dim": 64},
                device="local-cpu",
                backend="torch-eager",
                phase="decode",
                shape={"kv": 128},
                shape_key='{"kv":128}',
                median_ms=1.5,
                p10_ms=1.4,
                p90_ms=1.7,
                cv=0.05,
                n_samples=3,
                samples_ms=[1.4, 1.5, 1.7],
                stable=True,
                fingerprint={"cpu": "x"},
            )
        )
        session.add(
            Artifact(search_id=search.id, trial_id=trial.id, kind="pte", path="/tmp/x", sha256="0" * 64, size_bytes=10)
        )
        session.add(HypervolumePoint(search_id=search.id, n_finished=1, hypervolume=0.25))
    with session_scope(db_url) as session:
        stored = session.scalars(select(Search)).one()
        assert stored.spec == {"name": "s", "family": "moo-benchmark"}
        assert stored.created_at is not None
        trial = session.scalars(select(Trial)).one()
        assert trial.params == {"layers": [1, 2]} and trial.values == {"f1": 0.5}
        measurement = session.scalars(select(Measurement)).one()
        assert measurement.samples_ms == [1.4, 1.5, 1.7] and measurement.shape == {"kv": 128}
        assert session.scalars(select(Artifact)).one().size_bytes == 10
        assert session.scalars(select(HypervolumePoint)).one().hypervolume == 0.25


def test_a_trial_number_is_unique_within_its_search(db_url: str) -> None:
    with session_scope(db_url) as session:
        search = _search()
        session.add(search)
        session.flush()
        search_id = search.id
        session.add(Trial(search_id=search_id, number=0, params={}))
    with pytest.raises(Exception, match="(?i)unique"), session_scope(db_url) as session:
        session.add(Trial(search_id=search_id, number=0, params={}))
    with session_scope(db_url) as session:  # the failed transaction left the first row intact
        assert len(session.scalars(select(Trial)).all()) == 1


@pytest.fixture
def local_time_away_from_utc() -> Iterator[None]:
    """Nine hours east of UTC (a POSIX rule, no time-zone database needed), so an unconverted datetime shows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "JST-9")
        time.tzset()
        yield
    time.tzset()


@pytest.mark.usefixtures("local_time_away_from_utc")
def test_the_mirror_writes_what_optunas_add_trials_writes(db_url: str) -> None:
    """The mirror fills Optuna's tables itself for speed; Optuna must read back exactly what ``add_trials`` stores."""
    distributions = {
        "x": FloatDistribution(0.0, 1.0),
        "n": IntDistribution(1, 64, log=True),
        "kind": CategoricalDistribution(["a", "b", None]),
    }
    trials = [
        finished_trial(
            number,
            {"x": 0.1 * number, "n": 2**number, "kind": ["a", "b", None][number % 3]},
            distributions,
            TrialState.FAIL if number == 2 else TrialState.COMPLETE,
            None if number == 2 else [0.5 * number, math.inf if number == 3 else -1.0 * number],
            {"nsga2:generation": number, "constraints": [0.1, -0.2]},
        )
        for number in range(5)
    ]
    get_engine(db_url)
    mirror = StudyMirror("mirrored", db_url, ["minimize", "maximize"], flush_interval_s=3600)
    mirror.add(trials[:2])
    assert mirror.mirrored_numbers() == set()  # queued until the interval passes or a flush
    mirror.flush()
    mirror.add(trials[2:])
    mirror.flush()
    assert mirror.mirrored_numbers() == set(range(5))
    optuna.create_study(
        study_name="reference", storage=optuna_storage(db_url), directions=["minimize", "maximize"]
    ).add_trials(trials)

    def stored(name: str) -> list[optuna.trial.FrozenTrial]:
        return optuna.load_study(study_name=name, storage=optuna_storage(db_url)).get_trials()

    fields = ("number", "state", "values", "params", "distributions", "user_attrs", "system_attrs")
    fields += ("intermediate_values", "datetime_start", "datetime_complete")
    for ours, reference in zip(stored("mirrored"), stored("reference"), strict=True):
        assert {f: getattr(ours, f) for f in fields} == {f: getattr(reference, f) for f in fields}


def test_sqlite_store_runs_in_wal_mode(sqlite_url: str) -> None:
    with get_engine(sqlite_url).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_unreachable_database_is_a_user_error() -> None:
    with pytest.raises(UserError, match="Cannot reach the database"):
        get_engine("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")


def test_bad_url_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not a valid SQLAlchemy URL"):
        get_engine("this is not a url")


def test_db_upgrade_command(sqlite_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hilnas", "db", "upgrade", "--db-url", sqlite_url], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "migrated to" in result.stdout
    again = subprocess.run(
        [sys.executable, "-m", "hilnas", "db", "upgrade", "--db-url", sqlite_url], capture_output=True, text=True
    )
    assert "already at" in again.stdout


def test_unreachable_database_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hilnas", "search", "list", "--db-url", "postgresql+psycopg://u:pw@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: Cannot reach the database")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "pw" not in result.stderr  # the password is redacted


def test_figures_that_could_not_be_computed_are_stored_as_null(db_url: str) -> None:
    """PostgreSQL's JSON has no NaN: a Kendall tau over one point or an infinite ratio is stored as null."""
    from search.staged import StagedRun

    run = StagedRun.create(db_url, "check", "nan", {"tau": float("nan"), "ratios": [float("inf"), 1.5]}, ["only"])
    assert run.spec() == {"tau": None, "ratios": [None, 1.5]}
