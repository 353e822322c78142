"""Judge tables: one row per judging run (with its reports) and one per requirement verdict."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models.base import Base, utcnow


class JudgeRun(Base):
    """A task (DevAI) or a search (hilnas's own run) judged once: mode, totals, metrics and reports."""

    __tablename__ = "hilnas_judge_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)  # devai | search
    task_name: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(Text)  # workspace path, or "search <id>"
    search_id: Mapped[int | None] = mapped_column(
        ForeignKey("hilnas_searches.id", ondelete="SET NULL"), nullable=True, index=True
    )
    mode: Mapped[str] = mapped_column(String(20))  # llm | offline
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    requirement_set: Mapped[dict] = mapped_column()  # the task as judged, in DevAI format
    n_satisfied: Mapped[int] = mapped_column()
    n_unsatisfied: Mapped[int] = mapped_column()
    n_error: Mapped[int] = mapped_column()
    metrics: Mapped[dict] = mapped_column()  # I, D, solve, and alignment when human labels were given
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    elapsed_s: Mapped[float] = mapped_column(Float)
    report_markdown: Mapped[str] = mapped_column(Text)
    report_html: Mapped[str] = mapped_column(Text)
    report_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    verdicts: Mapped[list[JudgeVerdict]] = relationship(back_populates="run", cascade="all, delete-orphan")


class JudgeVerdict(Base):
    """The verdict on one requirement, who decided it (llm, offline, tool, skipped) and its evidence."""

    __tablename__ = "hilnas_judge_verdicts"
    __table_args__ = (UniqueConstraint("run_id", "requirement_id", name="uq_judge_verdict_requirement"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hilnas_judge_runs.id", ondelete="CASCADE"), index=True)
    requirement_id: Mapped[int] = mapped_column()
    criteria: Mapped[str] = mapped_column(Text)
    prerequisites: Mapped[list] = mapped_column()
    verdict: Mapped[str] = mapped_column(String(20))  # satisfied | unsatisfied | error
    decided_by: Mapped[str] = mapped_column(String(20))
    justification: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list] = mapped_column()  # [{path, start_line, end_line, excerpt, note}]
    human_satisfied: Mapped[bool | None] = mapped_column(nullable=True)
    llm_calls: Mapped[int] = mapped_column(default=0)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    elapsed_s: Mapped[float] = mapped_column(Float)

    run: Mapped[JudgeRun] = relationship(back_populates="verdicts")
