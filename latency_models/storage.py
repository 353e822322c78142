"""Predictors and device profiles in SQL: fitted estimators are pickled beside their metrics.

Only load predictors from a store you trust: the estimator blob is a pickle.
"""

from __future__ import annotations

import pickle
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
) -> int:
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
        )
        session.add(record)
        session.flush()
        return record.id


def load_selected(db_url: str, device: str, backend: str, phase: str) -> LatencyPredictor | None:
    """The newest predictor chosen by cross-validation for this device, backend and phase."""
    with session_scope(db_url) as session:
        record = session.scalar(
            select(LatencyPredictorRecord)
            .where(
                LatencyPredictorRecord.device == device,
                LatencyPredictorRecord.backend == backend,
                LatencyPredictorRecord.phase == phase,
                LatencyPredictorRecord.selected,
            )
            .order_by(LatencyPredictorRecord.id.desc())
            .limit(1)
        )
        return None if record is None else pickle.loads(record.model_blob)


def list_predictors(db_url: str, device: str | None = None) -> list[dict[str, Any]]:
    with session_scope(db_url) as session:
        query = select(LatencyPredictorRecord).order_by(LatencyPredictorRecord.id)
        if device is not None:
            query = query.where(LatencyPredictorRecord.device == device)
        return [
            {
                "id": r.id,
                "device": r.device,
                "backend": r.backend,
                "phase": r.phase,
                "name": r.name,
                "selected": r.selected,
                "n_measurements": r.n_measurements,
                "cv_mape": r.cv_mape,
                "metrics": r.metrics,
                "created_at": r.created_at,
            }
            for r in session.scalars(query)
        ]
