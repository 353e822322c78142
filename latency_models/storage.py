"""Predictors and device profiles in SQL: fitted estimators are pickled beside their metrics.

Only load predictors from a store you trust: the estimator blob is a pickle.
"""

from __future__ import annotations

import pickle
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from db.models import DeviceProfile, LatencyPredictorRecord
from db.session import session_scope
from latency_models.predictors import LatencyPredictor


def save_profile(db_url: str, device: str, threads: int, peaks: dict[str, float], fingerprint: dict) -> None:
    with session_scope(db_url) as session:
        session.add(DeviceProfile(device=device, threads=threads, fingerprint=fingerprint, **peaks))


def latest_profile(db_url: str, device: str) -> dict[str, float] | None:
    with session_scope(db_url) as session:
        row = session.scalar(
            select(DeviceProfile).where(DeviceProfile.device == device).order_by(DeviceProfile.id.desc()).limit(1)
        )
        return None if row is None else {"peak_gflops": row.peak_gflops, "bandwidth_gbs": row.bandwidth_gbs}


def save_predictor(
    db_url: str,
    *,
    device: str,
    backend: str,
    phase: str,
    predictor: LatencyPredictor,
    n_measurements: int,
    metrics: dict[str, Any],
    cv_mape: float | None,
    selected: bool,
    held_out: list[dict[str, Any]] | None = None,
) -> int:
    """Store one fitted predictor with its metrics and its per-point held-out predictions; returns its id."""
    with session_scope(db_url) as session:
        record = LatencyPredictorRecord(
            device=device,
            backend=backend,
            phase=phase,
            name=predictor.name,
            selected=selected,
            n_measurements=n_measurements,
            cv_mape=cv_mape,
            metrics=metrics,
            params={k: v for k, v in predictor.get_params().items() if isinstance(v, (int, float, str, bool))},
            model_blob=pickle.dumps(predictor),
            held_out=held_out,
        )
        session.add(record)
        session.flush()
        return record.id


def _selected_clause(device: str, backend: str, phase: str) -> tuple:
    return (
        LatencyPredictorRecord.device == device,
        LatencyPredictorRecord.backend == backend,
        LatencyPredictorRecord.phase == phase,
        LatencyPredictorRecord.selected,
    )


def selected_record(db_url: str, device: str, backend: str, phase: str) -> dict[str, Any] | None:
    """The newest predictor chosen by cross-validation for this device, backend and phase (without its blob)."""
    with session_scope(db_url) as session:
        record = session.scalar(
            select(LatencyPredictorRecord)
            .where(*_selected_clause(device, backend, phase))
            .order_by(LatencyPredictorRecord.id.desc())
            .limit(1)
        )
        return None if record is None else _as_dict(record)


def load_selected(db_url: str, device: str, backend: str, phase: str) -> LatencyPredictor | None:
    """The newest predictor chosen by cross-validation for this device, backend and phase."""
    with session_scope(db_url) as session:
        key = session.execute(
            select(LatencyPredictorRecord.id, LatencyPredictorRecord.created_at)
            .where(*_selected_clause(device, backend, phase))
            .order_by(LatencyPredictorRecord.id.desc())
            .limit(1)
        ).first()
    return None if key is None else _unpickled(db_url, key.id, key.created_at)


@lru_cache(maxsize=32)
def _unpickled(db_url: str, record_id: int, created_at: datetime) -> LatencyPredictor:
    """A stored predictor, unpickled once: records are never updated, and a search asks for the same
    one thousands of times (the creation time guards against a re-created store reusing the id)."""
    with session_scope(db_url) as session:
        return pickle.loads(session.get(LatencyPredictorRecord, record_id).model_blob)


def _as_dict(record: LatencyPredictorRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "device": record.device,
        "backend": record.backend,
        "phase": record.phase,
        "name": record.name,
        "selected": record.selected,
        "n_measurements": record.n_measurements,
        "cv_mape": record.cv_mape,
        "metrics": record.metrics,
        "created_at": record.created_at,
    }


def list_predictors(db_url: str, device: str | None = None) -> list[dict[str, Any]]:
    with session_scope(db_url) as session:
        query = select(LatencyPredictorRecord).order_by(LatencyPredictorRecord.id)
        if device is not None:
            query = query.where(LatencyPredictorRecord.device == device)
        return [_as_dict(r) for r in session.scalars(query)]
