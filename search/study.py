"""The Optuna side of a search: a fast in-memory study for sampling, mirrored into the store.

Optuna's RDB storage re-reads every unfinished trial on each ``ask``, which costs tens of
milliseconds per trial once a batch is in flight. The driver therefore samples from an in-memory
study and copies each *finished* trial into an RDB study in the hilnas database, so that
``optuna-dashboard <db-url>`` still shows it. The hilnas tables are the source of truth: on
resume, the in-memory study is rebuilt from them, and the mirror is topped up with any finished
trial it missed. Mirror writes, like the recorder's, wait out a store that briefly drops out.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.engine import make_url

from db.session import POSTGRES_KEEPALIVES, retry_transient
from search.spec import SamplerSpec, SearchSpec

NUMBER_ATTR = "hilnas_number"


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
    """The search's study in the hilnas database: finished trials only, tagged with their hilnas number."""

    def __init__(self, study_name: str, db_url: str, directions: list[str]) -> None:
        self.db_url = db_url
        storage = optuna_storage(db_url)
        self.study = optuna.create_study(
            study_name=study_name, storage=storage, directions=directions, load_if_exists=True
        )

    def mirrored_numbers(self) -> set[int]:
        def read() -> set[int]:
            trials = self.study.get_trials(deepcopy=False)
            return {t.user_attrs[NUMBER_ATTR] for t in trials if NUMBER_ATTR in t.user_attrs}

        return retry_transient(read, self.db_url)

    def add(self, trials: list[FrozenTrial]) -> None:
        """Copy finished trials; a re-run first drops those that an unacknowledged commit already copied."""
        tries = 0

        def copy() -> None:
            nonlocal tries
            tries += 1
            pending = trials
            if tries > 1:
                trials_now = self.study.get_trials(deepcopy=False)
                mirrored = {t.user_attrs.get(NUMBER_ATTR) for t in trials_now}
                pending = [t for t in trials if t.user_attrs[NUMBER_ATTR] not in mirrored]
            self.study.add_trials(pending)

        retry_transient(copy, self.db_url)


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
