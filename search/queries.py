"""Read-side queries on searches for the CLI, exports and reports (the dashboard has its own cache)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import func, select

from db.models import Search, Trial
from db.session import session_scope
from hilnas.errors import UserError


def list_searches(db_url: str | None = None) -> list[dict[str, Any]]:
    with session_scope(db_url) as session:
        counts = dict(
            session.execute(
                select(Trial.search_id, func.count())
                .where(Trial.state.in_(("complete", "failed", "invalid")))
                .group_by(Trial.search_id)
            ).all()
        )
        failed = dict(
            session.execute(
                select(Trial.search_id, func.count())
                .where(Trial.state.in_(("failed", "invalid")))
                .group_by(Trial.search_id)
            ).all()
        )
        return [
            {
                "id": s.id,
                "name": s.name,
                "family": s.family,
                "status": s.status,
                "finished": counts.get(s.id, 0),
                "target": s.n_trials_target,
                "failed": failed.get(s.id, 0),
                "hypervolume": s.hypervolume,
                "created_at": s.created_at,
            }
            for s in session.scalars(select(Search).order_by(Search.id))
        ]


def get_search(search_id: int, db_url: str | None = None) -> Search:
    with session_scope(db_url) as session:
        search = session.get(Search, search_id)
        if search is None:
            raise UserError(f"There is no search with id {search_id} in the store.")
        return search


def trials_frame(search_id: int, db_url: str | None = None) -> pd.DataFrame:
    """One row per trial: state, objective values, flattened params and bookkeeping."""
    get_search(search_id, db_url)
    with session_scope(db_url) as session:
        trials = list(session.scalars(select(Trial).where(Trial.search_id == search_id).order_by(Trial.number)))
    rows = []
    for t in trials:
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state,
            "attempts": t.attempts,
            "is_pareto": t.is_pareto,
            "feasible": t.feasible,
            "node": t.node,
            "duration_s": t.duration_s,
            "error": (t.error or "").splitlines()[0] if t.error else None,
        }
        row.update({f"value.{k}": v for k, v in (t.values or {}).items()})
        row.update({f"metric.{k}": v for k, v in (t.metrics or {}).items() if k not in (t.values or {})})
        row.update({f"param.{k}": _scalar(v) for k, v in t.params.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _scalar(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, list) else value
