"""Scaling-law tables: datasets with their quality indicators, sweeps, training runs, loss points and fits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models.base import Base, utcnow


class ScalingDataset(Base):
    """A training text (natural, teacher-sampled, repeated or a mixture) and its data-quality indicators.

    ``indicators`` holds the measured numbers (compression ratios, distinct n-gram ratios, teacher
    perplexity, syntheticity); ``indicator_cost`` says what they were computed on and how long it took.
    """

    __tablename__ = "hilnas_scaling_datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(50))
    recipe: Mapped[dict] = mapped_column()
    n_tokens: Mapped[int] = mapped_column(BigInteger)
    unique_tokens: Mapped[int] = mapped_column(BigInteger)
    indicators: Mapped[dict] = mapped_column()
    indicator_cost: Mapped[dict] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScalingSweep(Base):
    """One ``hilnas scaling sweep``: its validated spec and status."""

    __tablename__ = "hilnas_scaling_sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="created", index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    runs: Mapped[list[ScalingRun]] = relationship(back_populates="sweep", cascade="all, delete-orphan")


class ScalingRun(Base):
    """One tiny LM trained in a sweep: model size, data, learning rate and token budget."""

    __tablename__ = "hilnas_scaling_runs"
    __table_args__ = (UniqueConstraint("sweep_id", "key", name="uq_scaling_run_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("hilnas_scaling_sweeps.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("hilnas_scaling_datasets.id", ondelete="SET NULL"), nullable=True
    )
    key: Mapped[str] = mapped_column(String(200))
    n_params: Mapped[int] = mapped_column(BigInteger)
    model: Mapped[dict] = mapped_column()
    lr: Mapped[float] = mapped_column(Float)
    token_budget: Mapped[int] = mapped_column(BigInteger)
    seed: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    sweep: Mapped[ScalingSweep] = relationship(back_populates="runs")
    points: Mapped[list[ScalingPoint]] = relationship(back_populates="run", cascade="all, delete-orphan")


class ScalingPoint(Base):
    """Validation loss of a run after ``tokens`` training tokens (measured after a short LR cooldown)."""

    __tablename__ = "hilnas_scaling_points"
    __table_args__ = (UniqueConstraint("run_id", "tokens", name="uq_scaling_point_tokens"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("hilnas_scaling_runs.id", ondelete="CASCADE"), index=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    loss: Mapped[float] = mapped_column(Float)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)

    run: Mapped[ScalingRun] = relationship(back_populates="points")


class ScalingFit(Base):
    """One fitted law (a D_eff form) with constants, bootstrap intervals, evaluation and plotly figures."""

    __tablename__ = "hilnas_scaling_fits"

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int | None] = mapped_column(
        ForeignKey("hilnas_scaling_sweeps.id", ondelete="SET NULL"), nullable=True, index=True
    )
    source: Mapped[str] = mapped_column(Text)
    form: Mapped[str] = mapped_column(String(50))
    n_points: Mapped[int] = mapped_column()
    params: Mapped[dict] = mapped_column()
    intervals: Mapped[dict] = mapped_column()
    metrics: Mapped[dict] = mapped_column()
    figures: Mapped[dict] = mapped_column()
    fit_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
