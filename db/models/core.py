"""Core tables: searches, their trials, device measurements, artifacts and hypervolume history."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models.base import Base, utcnow


class Search(Base):
    """One search: its validated spec, objectives, status and the front's hypervolume."""

    __tablename__ = "hilnas_searches"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    family: Mapped[str] = mapped_column(String(100), index=True)
    spec: Mapped[dict] = mapped_column()
    objectives: Mapped[list] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="created", index=True)
    optuna_study_name: Mapped[str] = mapped_column(String(200), unique=True)
    n_trials_target: Mapped[int] = mapped_column()
    hypervolume: Mapped[float | None] = mapped_column(Float, nullable=True)
    reference_point: Mapped[list | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    trials: Mapped[list[Trial]] = relationship(back_populates="search", cascade="all, delete-orphan")


class Trial(Base):
    """One evaluated candidate; ``number`` is the Optuna trial number inside the search's study."""

    __tablename__ = "hilnas_trials"
    __table_args__ = (UniqueConstraint("search_id", "number", name="uq_trial_search_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("hilnas_searches.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    params: Mapped[dict] = mapped_column()
    values: Mapped[dict | None] = mapped_column(nullable=True)
    metrics: Mapped[dict | None] = mapped_column(nullable=True)
    state: Mapped[str] = mapped_column(String(20), default="running", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: Where the device actor measured the trial (``host:node_id:pid``), for families with latency objectives.
    device_node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: The sampler's bookkeeping (e.g. NSGA-II generation, constraints), to rebuild it on resume.
    sampler_attrs: Mapped[dict | None] = mapped_column(nullable=True)
    arch_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    feasible: Mapped[bool] = mapped_column(default=True)
    is_pareto: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    search: Mapped[Search] = relationship(back_populates="trials")


def measurement_shape_key(shape: dict[str, Any]) -> str:
    """The canonical text of a workload shape: the last part of the measurement cache key."""
    return json.dumps(shape, sort_keys=True, separators=(",", ":"))


class Measurement(Base):
    """A latency measurement of one architecture on one device, backend, phase and shape.

    The unique key is the measurement cache: the same architecture is never measured twice under
    the same conditions.
    """

    __tablename__ = "hilnas_measurements"
    __table_args__ = (
        UniqueConstraint("arch_hash", "device", "backend", "phase", "shape_key", name="uq_measurement_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int | None] = mapped_column(
        ForeignKey("hilnas_searches.id", ondelete="SET NULL"), nullable=True, index=True
    )
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("hilnas_trials.id", ondelete="SET NULL"), nullable=True)
    arch_hash: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[dict] = mapped_column()
    device: Mapped[str] = mapped_column(String(100))
    backend: Mapped[str] = mapped_column(String(100))
    phase: Mapped[str] = mapped_column(String(50))
    shape: Mapped[dict] = mapped_column()
    shape_key: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str | None] = mapped_column(String(50), nullable=True)
    median_ms: Mapped[float] = mapped_column(Float)
    p10_ms: Mapped[float] = mapped_column(Float)
    p90_ms: Mapped[float] = mapped_column(Float)
    cv: Mapped[float] = mapped_column(Float)
    n_samples: Mapped[int] = mapped_column()
    samples_ms: Mapped[list] = mapped_column()
    stable: Mapped[bool] = mapped_column(default=True)
    fingerprint: Mapped[dict] = mapped_column()
    extra: Mapped[dict | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Artifact(Base):
    """A file a search produced (an exported ``.pte``, a report, a plot), with its hash."""

    __tablename__ = "hilnas_artifacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int | None] = mapped_column(
        ForeignKey("hilnas_searches.id", ondelete="CASCADE"), nullable=True, index=True
    )
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("hilnas_trials.id", ondelete="SET NULL"), nullable=True)
    kind: Mapped[str] = mapped_column(String(50))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column()
    meta: Mapped[dict | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class HypervolumePoint(Base):
    """The hypervolume of a search's front after ``n_finished`` trials (for progress plots)."""

    __tablename__ = "hilnas_hypervolume"
    __table_args__ = (Index("ix_hv_search_n", "search_id", "n_finished"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("hilnas_searches.id", ondelete="CASCADE"))
    n_finished: Mapped[int] = mapped_column()
    hypervolume: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
