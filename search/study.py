"""The Optuna side of a search: a fast in-memory study for sampling, mirrored into the store.

Optuna's RDB storage re-reads every unfinished trial on each ``ask``, which costs tens of
milliseconds per trial once a batch is in flight. The driver therefore samples from an in-memory
study and copies *finished* trials, in batches, into an RDB study in the hilnas database, so that
``optuna-dashboard <db-url>`` still shows it. The hilnas tables are the source of truth: on
resume, the in-memory study is rebuilt from them, and the mirror is topped up with any finished
trial it missed. Mirror writes, like the recorder's, wait out a store that briefly drops out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, Table, event, func, insert, select
from sqlalchemy.engine import make_url

from db.session import POSTGRES_KEEPALIVES, retry_transient
from search.spec import SamplerSpec, SearchSpec

NUMBER_ATTR = "hilnas_number"
#: How long finished trials may wait before the mirror copies them into Optuna's tables.
MIRROR_INTERVAL_S = 2.0


def optuna_storage(db_url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on the hilnas database."""
    sqlite = db_url.startswith("sqlite")
    engine_kwargs: dict = {"connect_args": {"timeout": 30}} if sqlite else {"pool_pre_ping": True}
    if make_url(db_url).get_backend_name() == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": 5, **POSTGRES_KEEPALIVES}
    storage = optuna.storages.RDBStorage(db_url, engine_kwargs=engine_kwargs)
    if sqlite:
        # The hilnas engine already switched the file to WAL; make Optuna's connections use the
        # same durable-but-fast synchronous level, then drop its pooled connections so they do.
        @event.listens_for(storage.engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        storage.engine.dispose()
    return storage


def make_sampler(sampler: SamplerSpec) -> optuna.samplers.BaseSampler:
    """The spec's sampler; constraints reach it through ``Trial.set_constraint`` (Optuna 5)."""
    if sampler.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=sampler.population_size, seed=sampler.seed)
    if sampler.name == "tpe":
        return optuna.samplers.TPESampler(seed=sampler.seed, multivariate=True)
    if sampler.name == "gp":  # Gaussian-process BO: the most sample-efficient, slowest per ask
        return optuna.samplers.GPSampler(seed=sampler.seed)
    return optuna.samplers.RandomSampler(seed=sampler.seed)


def working_study(spec: SearchSpec) -> optuna.Study:
    """The in-memory study the driver samples from."""
    directions = [o.direction for o in spec.objectives or []]
    return optuna.create_study(sampler=make_sampler(spec.sampler), directions=directions)


class StudyMirror:
    """The search's study in the hilnas database: finished trials only, tagged with their hilnas number.

    Optuna's ``add_trials`` spends one transaction and about twenty statements on each trial
    (milliseconds apiece, once the largest part of the driver's per-trial cost), so the mirror
    creates the study through Optuna but writes finished trials itself, many per transaction,
    into Optuna's own table definitions (``optuna.storages._rdb.models``, which the storage has
    checked against the database's schema version). The rows are the ones Optuna would write:
    numbers follow insertion order, datetimes are naive UTC, values and params use Optuna's stored
    representations (``tests/test_store.py`` compares them with ``add_trials``).

    ``add`` only queues trials; they are copied when ``flush_interval_s`` has passed since the last
    copy, and on ``flush``. The mirror may therefore lag the store by that long during a run; the
    driver flushes at the end of ``run`` and when resuming, so it is complete then.
    """

    def __init__(
        self, study_name: str, db_url: str, directions: list[str], flush_interval_s: float = MIRROR_INTERVAL_S
    ) -> None:
        self.db_url = db_url
        storage = optuna_storage(db_url)
        optuna.create_study(study_name=study_name, storage=storage, directions=directions, load_if_exists=True)
        self.engine = storage.engine
        self.study_id = storage.get_study_id_from_name(study_name)
        self.flush_interval_s = flush_interval_s
        self._queued: list[FrozenTrial] = []
        self._flushed_at = time.monotonic()
        self._unconfirmed = False  # set while a flush has not seen its commit through

    def mirrored_numbers(self) -> set[int]:
        """The hilnas numbers of the trials already copied."""

        def read() -> set[int]:
            with self.engine.connect() as connection:
                return self._numbers(connection)

        return retry_transient(read, self.db_url)

    def _numbers(self, connection: Connection) -> set[int]:
        attrs, trials = models.TrialUserAttributeModel.__table__, models.TrialModel.__table__
        rows = connection.execute(
            select(attrs.c.value_json)
            .join(trials, trials.c.trial_id == attrs.c.trial_id)
            .where(trials.c.study_id == self.study_id, attrs.c.key == NUMBER_ATTR)
        )
        return {json.loads(value) for (value,) in rows}

    def add(self, trials: list[FrozenTrial]) -> None:
        """Queue finished trials, and copy the queue once ``flush_interval_s`` has passed since the last copy."""
        self._queued.extend(trials)
        if time.monotonic() - self._flushed_at >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Copy the queued trials in one transaction.

        When the commit may have gone through unseen (a lost acknowledgement, retried here, or a
        previous flush stopped by Ctrl-C), the copy first drops the trials already in the study.
        """
        if not self._queued:
            return
        trials = self._queued
        check = self._unconfirmed
        self._unconfirmed = True

        def copy() -> None:
            nonlocal check
            with self.engine.begin() as connection:
                pending = trials
                if check:
                    mirrored = self._numbers(connection)
                    pending = [t for t in trials if t.user_attrs[NUMBER_ATTR] not in mirrored]
                check = True  # should this commit's acknowledgement be lost, the re-run checks
                if pending:
                    self._insert(connection, pending)

        retry_transient(copy, self.db_url)
        self._queued = []
        self._flushed_at = time.monotonic()
        self._unconfirmed = False

    def _insert(self, connection: Connection, trials: list[FrozenTrial]) -> None:
        trials_table = models.TrialModel.__table__
        # Lock the study row while numbering, as Optuna does (PostgreSQL; SQLite has a single writer anyway).
        study = models.StudyModel.__table__
        connection.execute(select(study.c.study_id).where(study.c.study_id == self.study_id).with_for_update())
        first = connection.scalar(
            select(func.count(trials_table.c.trial_id)).where(trials_table.c.study_id == self.study_id)
        )
        trial_ids = connection.scalars(
            insert(trials_table).returning(trials_table.c.trial_id, sort_by_parameter_order=True),
            [
                {
                    "study_id": self.study_id,
                    "number": first + i,
                    "state": trial.state,
                    "datetime_start": _naive_utc(trial.datetime_start),
                    "datetime_complete": _naive_utc(trial.datetime_complete),
                }
                for i, trial in enumerate(trials)
            ],
        ).all()
        rows: dict[Table, list[dict[str, Any]]] = {table: [] for table in _CHILD_TABLES}
        for trial_id, trial in zip(trial_ids, trials, strict=True):
            for table, row in _child_rows(trial):
                rows[table].append({"trial_id": trial_id, **row})
        for table, table_rows in rows.items():
            if table_rows:
                connection.execute(insert(table), table_rows)


_CHILD_TABLES = [
    models.TrialParamModel.__table__,
    models.TrialValueModel.__table__,
    models.TrialUserAttributeModel.__table__,
    models.TrialSystemAttributeModel.__table__,
]


def _child_rows(trial: FrozenTrial) -> Iterator[tuple[Table, dict[str, Any]]]:
    """A finished trial's params, values and attributes in Optuna's stored representation."""
    params, values, user_attrs, system_attrs = _CHILD_TABLES
    for name, value in trial.params.items():
        distribution = trial.distributions[name]
        yield (
            params,
            {
                "param_name": name,
                "param_value": distribution.to_internal_repr(value),
                "distribution_json": distribution_to_json(distribution),
            },
        )
    for objective, value in enumerate(trial.values or []):
        stored, value_type = models.TrialValueModel.value_to_stored_repr(value)
        yield values, {"objective": objective, "value": stored, "value_type": value_type}
    for table, attrs in ((user_attrs, trial.user_attrs), (system_attrs, trial.system_attrs)):
        for key, value in attrs.items():
            yield table, {"key": key, "value_json": json.dumps(value)}


def _naive_utc(moment: datetime | None) -> datetime | None:
    """Optuna's RDB storage keeps datetimes as naive UTC (its ``FrozenTrial`` carries naive local time)."""
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def finished_trial(
    number: int,
    params: dict[str, Any],
    distributions: dict[str, BaseDistribution],
    state: TrialState,
    values: list[float] | None,
    system_attrs: dict[str, Any] | None,
) -> FrozenTrial:
    """A finished trial as Optuna stores it (flat params), tagged with the hilnas number."""
    return optuna.trial.create_trial(
        state=state,
        params=params,
        distributions=distributions,
        values=values if state == TrialState.COMPLETE else None,
        user_attrs={NUMBER_ATTR: number},
        system_attrs=system_attrs or {},
    )
