"""The dashboard's read-only query layer, cached with a short TTL.

Every function takes the store URL as its first argument, so the cache is keyed by store, and returns
plain pandas/dict data (safe to cache and to hand to plotly). Trials are read as a few columns per row,
never as ORM objects, which keeps a 10,000-trial search responsive; parameters are read only for the
one trial a user opens. The dashboard never migrates or writes the store.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import LargeBinary, func, select
from sqlalchemy import inspect as sa_inspect

from db.models import Artifact, Base, HypervolumePoint, Measurement, Search, Trial
from db.session import get_engine
from hilnas.settings import get_settings

#: Seconds a query result is reused: short enough that a running search visibly advances.
LIVE_TTL_S = 5
#: Results that change rarely (schema, finished fits and reports).
SLOW_TTL_S = 60
FINISHED_STATES = ("complete", "failed", "invalid")
CORE_TABLES = ("hilnas_searches", "hilnas_trials", "hilnas_measurements", "hilnas_artifacts", "hilnas_hypervolume")
#: Trial columns every trials frame has; metric columns come after them.
TRIAL_COLUMNS = ("number", "state", "feasible", "is_pareto", "attempts", "duration_s", "node", "arch_hash", "error")


def store_url() -> str:
    """The store the dashboard reads: ``HILNAS_DB_URL`` (``hilnas dashboard --db-url`` sets it)."""
    return get_settings().db_url


def _engine(url: str):  # noqa: ANN202 - sqlalchemy Engine
    return get_engine(url, migrate=False)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def table_names(url: str) -> frozenset[str]:
    return frozenset(sa_inspect(_engine(url)).get_table_names())


def clear_caches() -> None:
    st.cache_data.clear()


# --------------------------------------------------------------------------- searches


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def searches(url: str) -> pd.DataFrame:
    """One row per search with progress counts; newest first."""
    columns = [
        "id",
        "name",
        "family",
        "status",
        "finished",
        "failed",
        "running",
        "target",
        "hypervolume",
        "created_at",
        "started_at",
        "finished_at",
        "error",
    ]
    with _engine(url).connect() as connection:
        counts = connection.execute(
            select(Trial.search_id, Trial.state, func.count()).group_by(Trial.search_id, Trial.state)
        ).all()
        rows = connection.execute(
            select(
                Search.id,
                Search.name,
                Search.family,
                Search.status,
                Search.n_trials_target,
                Search.hypervolume,
                Search.created_at,
                Search.started_at,
                Search.finished_at,
                Search.error,
            ).order_by(Search.id.desc())
        ).all()
    by_state: dict[int, dict[str, int]] = {}
    for search_id, state, count in counts:
        by_state.setdefault(search_id, {})[state] = count
    records = []
    for row in rows:
        states = by_state.get(row.id, {})
        records.append(
            {
                "id": row.id,
                "name": row.name,
                "family": row.family,
                "status": row.status,
                "finished": sum(states.get(s, 0) for s in FINISHED_STATES),
                "failed": states.get("failed", 0) + states.get("invalid", 0),
                "running": states.get("running", 0),
                "target": row.n_trials_target,
                "hypervolume": row.hypervolume,
                "created_at": row.created_at,
                "started_at": row.started_at,
                "finished_at": row.finished_at,
                "error": (row.error or "").splitlines()[0] if row.error else None,
            }
        )
    return pd.DataFrame(records, columns=columns)


@dataclass(frozen=True)
class SearchInfo:
    id: int
    name: str
    family: str
    status: str
    objectives: tuple[tuple[str, str], ...]  # (name, direction)
    constraints: tuple[dict[str, Any], ...]
    reference_point: tuple[float, ...] | None
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        return f"#{self.id} {self.name}"

    def direction(self, metric: str) -> str:
        return dict(self.objectives).get(metric, "minimize")


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def search_info(url: str, search_id: int) -> SearchInfo | None:
    with _engine(url).connect() as connection:
        row = connection.execute(
            select(
                Search.id,
                Search.name,
                Search.family,
                Search.status,
                Search.objectives,
                Search.reference_point,
                Search.spec,
            ).where(Search.id == search_id)
        ).first()
    if row is None:
        return None
    return SearchInfo(
        id=row.id,
        name=row.name,
        family=row.family,
        status=row.status,
        objectives=tuple((o["name"], o.get("direction", "minimize")) for o in row.objectives or []),
        constraints=tuple((row.spec or {}).get("constraints") or ()),
        reference_point=tuple(row.reference_point) if row.reference_point else None,
        spec=row.spec or {},
    )


# --------------------------------------------------------------------------- trials


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def trials(url: str, search_id: int) -> pd.DataFrame:
    """One row per trial: bookkeeping columns, then one numeric column per reported metric.

    A metric whose name collides with a bookkeeping column is renamed ``metric:<name>``.
    """
    with _engine(url).connect() as connection:
        rows = connection.execute(
            select(
                Trial.number,
                Trial.state,
                Trial.feasible,
                Trial.is_pareto,
                Trial.attempts,
                Trial.duration_s,
                Trial.node,
                Trial.arch_hash,
                Trial.error,
                Trial.metrics,
                Trial.values,
            )
            .where(Trial.search_id == search_id)
            .order_by(Trial.number)
        ).all()
    records = []
    for row in rows:
        record = {name: getattr(row, name) for name in TRIAL_COLUMNS}
        record["error"] = row.error.splitlines()[0] if row.error else None
        reported = {**(row.metrics or {}), **(row.values or {})}
        for name, value in reported.items():
            record[f"metric:{name}" if name in TRIAL_COLUMNS else name] = value
        records.append(record)
    frame = pd.DataFrame(records)
    if frame.empty:
        return pd.DataFrame(columns=list(TRIAL_COLUMNS))
    return frame


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric metric columns of a trials frame (everything after the bookkeeping columns)."""
    return [c for c in frame.columns if c not in TRIAL_COLUMNS and pd.api.types.is_numeric_dtype(frame[c])]


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def hypervolume_history(url: str, search_ids: tuple[int, ...]) -> pd.DataFrame:
    with _engine(url).connect() as connection:
        rows = connection.execute(
            select(HypervolumePoint.search_id, HypervolumePoint.n_finished, HypervolumePoint.hypervolume)
            .where(HypervolumePoint.search_id.in_(search_ids))
            .order_by(HypervolumePoint.search_id, HypervolumePoint.n_finished, HypervolumePoint.id)
        ).all()
    return pd.DataFrame(rows, columns=["search_id", "n_finished", "hypervolume"])


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def trial_detail(url: str, search_id: int, number: int) -> dict[str, Any] | None:
    """Everything about one trial: parameters, metrics, its measurements (with samples) and artifacts."""
    with _engine(url).connect() as connection:
        trial = connection.execute(
            select(
                Trial.id,
                Trial.number,
                Trial.state,
                Trial.params,
                Trial.values,
                Trial.metrics,
                Trial.error,
                Trial.arch_hash,
                Trial.node,
                Trial.attempts,
                Trial.duration_s,
                Trial.feasible,
                Trial.is_pareto,
            ).where(Trial.search_id == search_id, Trial.number == number)
        ).first()
        if trial is None:
            return None
        # Measurements are cached per architecture, so a trial may reuse another trial's measurement.
        measurement_filter = Measurement.trial_id == trial.id
        if trial.arch_hash:
            measurement_filter = measurement_filter | (Measurement.arch_hash == trial.arch_hash)
        measurements = connection.execute(
            select(
                Measurement.device,
                Measurement.backend,
                Measurement.phase,
                Measurement.shape,
                Measurement.stage,
                Measurement.median_ms,
                Measurement.p10_ms,
                Measurement.p90_ms,
                Measurement.cv,
                Measurement.n_samples,
                Measurement.stable,
                Measurement.samples_ms,
            )
            .where(measurement_filter)
            .order_by(Measurement.id)
        ).all()
        artifacts = connection.execute(
            select(Artifact.id, Artifact.kind, Artifact.path, Artifact.sha256, Artifact.size_bytes)
            .where(Artifact.trial_id == trial.id)
            .order_by(Artifact.id)
        ).all()
    return {
        "number": trial.number,
        "state": trial.state,
        "params": trial.params or {},
        "values": trial.values or {},
        "metrics": trial.metrics or {},
        "error": trial.error,
        "arch_hash": trial.arch_hash,
        "node": trial.node,
        "attempts": trial.attempts,
        "duration_s": trial.duration_s,
        "feasible": trial.feasible,
        "is_pareto": trial.is_pareto,
        "measurements": pd.DataFrame([m._asdict() for m in measurements]),
        "artifacts": [a._asdict() for a in artifacts],
    }


def read_artifact(path: str, max_bytes: int = 512 * 1024 * 1024) -> bytes | None:
    """The artifact's bytes when the file is on this machine (and not huge), else None."""
    file = Path(path)
    if not file.is_file() or file.stat().st_size > max_bytes:
        return None
    return file.read_bytes()


# --------------------------------------------------------------------------- capabilities


@dataclass(frozen=True)
class Capability:
    """Whether a capability's tables are in the code and in the store, and how many rows they hold."""

    area: str
    built: bool
    tables: tuple[str, ...]
    missing_in_store: tuple[str, ...]
    rows: dict[str, int]

    @property
    def has_data(self) -> bool:
        return self.built and not self.missing_in_store and any(self.rows.values())


def model_classes(area: str) -> list[type]:
    """The ORM classes defined in ``db.models.<area>``; empty when that module does not exist yet."""
    try:
        module = importlib.import_module(f"db.models.{area}")
    except ModuleNotFoundError as exc:
        if exc.name in (f"db.models.{area}",):
            return []
        raise
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Base) and cls is not Base and cls.__module__ == module.__name__
    ]


@st.cache_data(ttl=SLOW_TTL_S, show_spinner=False)
def capability(url: str, area: str) -> Capability:
    classes = model_classes(area)
    tables = tuple(sorted(cls.__tablename__ for cls in classes))
    present = table_names(url)
    missing = tuple(t for t in tables if t not in present)
    rows: dict[str, int] = {}
    with _engine(url).connect() as connection:
        for cls in classes:
            if cls.__tablename__ in present:
                rows[cls.__tablename__] = connection.execute(select(func.count()).select_from(cls)).scalar_one()
    return Capability(area, bool(classes), tables, missing, rows)


@st.cache_data(ttl=SLOW_TTL_S, show_spinner=False)
def column_names(url: str, table: str) -> frozenset[str]:
    """The columns ``table`` has in the store: an older store may lack columns added since (it is not migrated here)."""
    return frozenset(c["name"] for c in sa_inspect(_engine(url)).get_columns(table))


@st.cache_data(ttl=SLOW_TTL_S, show_spinner=False)
def table_frame(url: str, area: str, table: str, limit: int = 5000) -> pd.DataFrame:
    """Rows of one capability table (newest first when it has an ``id``) for pages that render them."""
    table_ = next(c for c in model_classes(area) if c.__tablename__ == table).__table__
    present = column_names(url, table)
    # Binary columns (pickled estimators) are of no use on a page and can be large.
    columns = [c for c in table_.c if not isinstance(c.type, LargeBinary) and c.name in present]
    statement = select(*columns)
    if "id" in table_.c:
        statement = statement.order_by(table_.c.id.desc())
    with _engine(url).connect() as connection:
        rows = connection.execute(statement.limit(limit)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in columns])


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def verified_latency(url: str, search_id: int | None = None) -> pd.DataFrame:
    """Measured against predicted latency, for every measurement that carries a predictor's estimate.

    The verification stage stores the estimate beside the measurement as ``Measurement.extra["predicted_ms"]``;
    measurements without one are left out. ``search_id`` limits the rows to one search.
    """
    statement = select(
        Measurement.search_id,
        Trial.number,
        Measurement.device,
        Measurement.backend,
        Measurement.phase,
        Measurement.stage,
        Measurement.median_ms,
        Measurement.p10_ms,
        Measurement.p90_ms,
        Measurement.extra,
    ).outerjoin(Trial, Trial.id == Measurement.trial_id)
    if search_id is not None:
        statement = statement.where(Measurement.search_id == search_id)
    with _engine(url).connect() as connection:
        rows = connection.execute(statement.where(Measurement.extra.is_not(None))).all()
    keys = ("search_id", "number", "device", "backend", "phase", "stage")
    records = [
        {
            **{k: getattr(r, k) for k in keys},
            "measured_ms": r.median_ms,
            "p10_ms": r.p10_ms,
            "p90_ms": r.p90_ms,
            "predicted_ms": float(r.extra["predicted_ms"]),
        }
        for r in rows
        if isinstance(r.extra, dict) and r.extra.get("predicted_ms") is not None
    ]
    frame = pd.DataFrame(records, columns=[*keys, "measured_ms", "p10_ms", "p90_ms", "predicted_ms"])
    return frame.assign(error_pct=(frame["predicted_ms"] - frame["measured_ms"]) / frame["measured_ms"] * 100)


DRIFT_COLUMNS = ["device", "backend", "phase", "reference", "measured_at", "drift"]


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def device_drift(url: str) -> pd.DataFrame:
    """The drift reference's time over its baseline at every drift-corrected measurement, oldest first:
    how much faster or slower the device ran while it measured (1.0 = as fast as its baseline). ``reference`` is
    the program that was timed (rows from before it was recorded name their phase's)."""
    statement = select(
        Measurement.device, Measurement.backend, Measurement.phase, Measurement.created_at, Measurement.extra
    ).where(Measurement.extra.is_not(None))
    with _engine(url).connect() as connection:
        rows = connection.execute(statement.order_by(Measurement.created_at)).all()
    records = [
        (r.device, r.backend, r.phase, r.extra.get("reference_program", r.phase), r.created_at, float(r.extra["drift"]))
        for r in rows
        if isinstance(r.extra, dict) and r.extra.get("drift") is not None
    ]
    return pd.DataFrame(records, columns=DRIFT_COLUMNS)


HELD_OUT_COLUMNS = ["id", "phase", "predictor", "selected", "split", "arch_hash", "measured_ms", "predicted_ms"]


@st.cache_data(ttl=SLOW_TTL_S, show_spinner=False)
def held_out_points(url: str, device: str, backend: str) -> pd.DataFrame:
    """Every held-out prediction of the newest fit of each predictor and phase on ``device`` and ``backend``.

    One row per point (``split`` "random" or "out_of_range") with its relative error; empty when the
    predictors were stored without their points (fitted before they were recorded, or an older store).
    """
    from db.models import LatencyPredictorRecord as Record

    if "held_out" not in column_names(url, Record.__tablename__):
        return pd.DataFrame(columns=[*HELD_OUT_COLUMNS, "error_pct"])
    newest = (
        select(func.max(Record.id))
        .where(Record.device == device, Record.backend == backend)
        .group_by(Record.phase, Record.name)
    )
    with _engine(url).connect() as connection:
        rows = connection.execute(
            select(Record.id, Record.phase, Record.name, Record.selected, Record.held_out).where(Record.id.in_(newest))
        ).all()
    records = [
        {
            "id": row.id,
            "phase": row.phase,
            "predictor": row.name,
            "selected": row.selected,
            **{k: point[k] for k in ("split", "arch_hash", "measured_ms", "predicted_ms")},
        }
        for row in rows
        for point in row.held_out or []
    ]
    frame = pd.DataFrame(records, columns=HELD_OUT_COLUMNS)
    return frame.assign(error_pct=(frame["predicted_ms"] - frame["measured_ms"]) / frame["measured_ms"] * 100)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def trials_with_params(url: str, search_id: int) -> pd.DataFrame:
    """Every trial with its scalar parameters (``param.<name>``; per-layer lists are left out) and objective
    values (``value.<name>``), the layout of ``search.queries.trials_frame``.

    Unlike ``trials`` this reads every trial's parameters: for pages that plot by parameter, on searches
    of a few hundred trials (rotation recipes), not for the 10,000-trial explorer.
    """
    with _engine(url).connect() as connection:
        rows = connection.execute(
            select(Trial.number, Trial.state, Trial.params, Trial.values)
            .where(Trial.search_id == search_id)
            .order_by(Trial.number)
        ).all()
    records = [
        {
            "number": row.number,
            "state": row.state,
            **{f"value.{k}": v for k, v in (row.values or {}).items()},
            **{f"param.{k}": v for k, v in (row.params or {}).items() if not isinstance(v, list)},
        }
        for row in rows
    ]
    return pd.DataFrame(records) if records else pd.DataFrame(columns=["number", "state"])


@st.cache_data(ttl=SLOW_TTL_S, show_spinner=False)
def judge_verdicts(url: str, run_id: int) -> pd.DataFrame:
    from db.models.judge import JudgeVerdict

    columns = [c for c in JudgeVerdict.__table__.c if c.name not in ("run_id",)]
    with _engine(url).connect() as connection:
        rows = (
            connection.execute(
                select(*columns).where(JudgeVerdict.run_id == run_id).order_by(JudgeVerdict.requirement_id)
            )
            .mappings()
            .all()
        )
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in columns])
