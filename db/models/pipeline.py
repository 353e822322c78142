"""Staged runs: a pipeline of named stages whose outputs are stored, so a resumed run skips finished stages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models.base import Base, utcnow


class PipelineRun(Base):
    """One run of a staged pipeline (e.g. MobileLLM-Flash: backbone, calibrate, search, verify, export)."""

    __tablename__ = "hilnas_pipeline_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="created", index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    stages: Mapped[list[PipelineStage]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="PipelineStage.position"
    )


class PipelineStage(Base):
    """One stage of a run: its status and, once done, its output (what later stages and reports read)."""

    __tablename__ = "hilnas_pipeline_stages"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_hilnas_pipeline_stage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hilnas_pipeline_runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    position: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    output: Mapped[dict | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(nullable=True)

    run: Mapped[PipelineRun] = relationship(back_populates="stages")
