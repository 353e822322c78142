"""The decision log in SQL: what each planner proposed, in which round, why, and whether it was accepted.

An accepted action and the stage it adds to the run's plan are written in one transaction, so a resumed
run finds every planned stage with the decision (and arguments) that planned it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from db.models import AgentDecision
from db.session import session_scope
from search.staged import StagedRun


@dataclass
class Decision:
    """One proposal and its fate; ``stage`` is the plan stage an accepted action runs as."""

    round: int
    planner: str
    action: str
    arguments: dict[str, Any]
    reason: str
    accepted: bool
    rejection: str | None = None
    stage: str | None = None
    position: int = 0
    state: dict[str, Any] = field(default_factory=dict)


def record(run: StagedRun, decision: Decision) -> None:
    """Store ``decision``; an accepted one that names a stage appends that stage to the plan in the same
    transaction."""
    row = AgentDecision(
        run_id=run.run_id,
        round=decision.round,
        position=decision.position,
        planner=decision.planner,
        action=decision.action,
        arguments=decision.arguments,
        reason=decision.reason,
        accepted=decision.accepted,
        rejection=decision.rejection,
        stage=decision.stage,
        state=decision.state,
    )
    if decision.accepted and decision.stage is not None:
        run.append_stage(decision.stage, with_rows=[row])
    else:
        with session_scope(run.db_url) as session:
            session.add(row)


def load(db_url: str, run_id: int) -> list[Decision]:
    """Every decision of a run, in the order it was made."""
    with session_scope(db_url) as session:
        rows = session.scalars(select(AgentDecision).where(AgentDecision.run_id == run_id).order_by(AgentDecision.id))
        return [
            Decision(
                r.round,
                r.planner,
                r.action,
                dict(r.arguments),
                r.reason,
                r.accepted,
                r.rejection,
                r.stage,
                r.position,
                dict(r.state),
            )
            for r in rows
        ]
