"""The Optuna side of a search: storage in the hilnas database, samplers and constraints."""

from __future__ import annotations

import optuna
from sqlalchemy import event

from search.spec import SamplerSpec, SearchSpec

CONSTRAINTS_ATTR = "constraints"


def optuna_storage(db_url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on the hilnas database, so ``optuna-dashboard <db-url>`` shows the study."""
    sqlite = db_url.startswith("sqlite")
    engine_kwargs = {"connect_args": {"timeout": 30}} if sqlite else {"pool_pre_ping": True}
    storage = optuna.storages.RDBStorage(db_url, engine_kwargs=engine_kwargs, skip_compatibility_check=False)
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


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    return trial.user_attrs.get(CONSTRAINTS_ATTR, [])


def make_sampler(sampler: SamplerSpec, has_constraints: bool) -> optuna.samplers.BaseSampler:
    constraints_func = _constraints if has_constraints else None
    if sampler.name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            population_size=sampler.population_size, seed=sampler.seed, constraints_func=constraints_func
        )
    if sampler.name == "tpe":
        return optuna.samplers.TPESampler(seed=sampler.seed, constraints_func=constraints_func, multivariate=True)
    return optuna.samplers.RandomSampler(seed=sampler.seed)


def open_study(spec: SearchSpec, study_name: str, db_url: str, create: bool) -> optuna.Study:
    """Create (or load) the study; the sampler is rebuilt from the spec on every resume."""
    storage = optuna_storage(db_url)
    sampler = make_sampler(spec.sampler, bool(spec.constraints))
    directions = [o.direction for o in spec.objectives or []]
    if create:
        return optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, directions=directions)
    return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
