"""The orchestrating agent's decision log: every action a planner proposed, accepted or rejected, and why."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, utcnow


class AgentDecision(Base):
    """One proposed action of one planning round of an agent run (a ``hilnas_pipeline_runs`` row of kind "agent").

    Accepted decisions name the stage they created; rejected ones say why they were refused. ``state`` is the
    summary the planner decided on (budget used and left, the verified front, the predictor's error).
    """

    __tablename__ = "hilnas_agent_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hilnas_pipeline_runs.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column()
    position: Mapped[int] = mapped_column()
    planner: Mapped[str] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(100))
    arguments: Mapped[dict] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)
    accepted: Mapped[bool] = mapped_column()
    rejection: Mapped[str | None] = mapped_column(Text, nullable=True)
    stage: Mapped[str | None] = mapped_column(String(50), nullable=True)
    state: Mapped[dict] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
