"""Reads and writes of scaling-law rows; each write is one transaction, so nothing is half-stored."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from db.models import ScalingDataset, ScalingFit, ScalingPoint, ScalingRun, ScalingSweep
from db.session import session_scope
from hilnas.errors import UserError
from search.scaling.data import ScalingData, make_scaling_data
from search.scaling.evaluation import LawReport


def save_reports(db_url: str | None, reports: list[LawReport], source: str, sweep_id: int | None = None) -> list[int]:
    """Store every form's fit, intervals, evaluation and figures; returns the new fit ids."""
    with session_scope(db_url) as session:
        rows = [
            ScalingFit(
                sweep_id=sweep_id,
                source=source,
                form=r.form.name,
                n_points=r.fit.n_points,
                params=r.fit.params,
                intervals={k: list(v) for k, v in r.intervals.items()},
                metrics=r.summary(),
                figures=r.figures,
                fit_seconds=r.fit_seconds,
            )
            for r in reports
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def sweep_frame(db_url: str | None, sweep_id: int) -> pd.DataFrame:
    """One row per recorded loss point of a sweep: N, D, loss, the dataset's indicators and its name."""
    with session_scope(db_url) as session:
        if session.get(ScalingSweep, sweep_id) is None:
            raise UserError(f"No scaling sweep with id {sweep_id} in the store.")
        query = (
            select(ScalingRun.n_params, ScalingPoint.tokens, ScalingPoint.loss, ScalingDataset)
            .join(ScalingPoint, ScalingPoint.run_id == ScalingRun.id)
            .join(ScalingDataset, ScalingDataset.id == ScalingRun.dataset_id)
            .where(ScalingRun.sweep_id == sweep_id, ScalingRun.status == "complete")
            .order_by(ScalingRun.n_params, ScalingPoint.tokens)
        )
        records = [
            {
                "N": n,
                "D": tokens,
                "loss": loss,
                "diversity": dataset.indicators.get("diversity"),
                "syntheticity": dataset.indicators.get("syntheticity"),
                "unique_tokens": dataset.unique_tokens,
                "label": dataset.name,
            }
            for n, tokens, loss, dataset in session.execute(query)
        ]
    return pd.DataFrame.from_records(
        records, columns=["N", "D", "loss", "diversity", "syntheticity", "unique_tokens", "label"]
    )


def sweep_data(db_url: str | None, sweep_id: int) -> ScalingData:
    frame = sweep_frame(db_url, sweep_id)
    if frame.empty:
        raise UserError(f"Scaling sweep {sweep_id} has no finished runs with loss points to fit.")
    return make_scaling_data(frame, origin=f"Scaling sweep {sweep_id}")


def fits_frame(db_url: str | None) -> pd.DataFrame:
    """Every stored fit with its headline numbers (what ``hilnas scaling list`` and a dashboard page show)."""
    with session_scope(db_url) as session:
        rows = session.scalars(select(ScalingFit).order_by(ScalingFit.id)).all()
        records = [
            {
                "id": f.id,
                "source": f.source,
                "form": f.form,
                "n_points": f.n_points,
                "held_out_error": f.metrics.get("held_out", {}).get("mean_rel_error"),
                "pearson": f.metrics.get("pearson"),
                "spearman": f.metrics.get("spearman"),
                "created_at": f.created_at,
            }
            for f in rows
        ]
    columns = ["id", "source", "form", "n_points", "held_out_error", "pearson", "spearman", "created_at"]
    return pd.DataFrame.from_records(records, columns=columns)
