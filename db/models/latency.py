"""Latency tables: measured device peaks and fitted latency predictors with their accuracy."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, utcnow


class DeviceProfile(Base):
    """Peak compute and memory bandwidth measured on a device (the roofline's ceilings)."""

    __tablename__ = "hilnas_device_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    device: Mapped[str] = mapped_column(String(100), index=True)
    threads: Mapped[int] = mapped_column()
    peak_gflops: Mapped[float] = mapped_column(Float)
    bandwidth_gbs: Mapped[float] = mapped_column(Float)
    fingerprint: Mapped[dict] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReferenceBaseline(Base):
    """The typical time of the drift reference program on a device: drift-corrected latencies are ratios to
    the reference times this baseline, so every process measuring the device must use the same one (the
    first stored wins)."""

    __tablename__ = "hilnas_reference_baselines"
    __table_args__ = (Index("ix_reference_baseline_key", "device", "backend", "threads", "program"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device: Mapped[str] = mapped_column(String(100))
    backend: Mapped[str] = mapped_column(String(50))
    threads: Mapped[int] = mapped_column()
    program: Mapped[str] = mapped_column(String(100))
    median_ms: Mapped[float] = mapped_column(Float)
    fingerprint: Mapped[dict] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LatencyPredictorRecord(Base):
    """One fitted predictor for a (device, backend, phase), its metrics and the pickled estimator.

    ``metrics`` holds {"random": {...}, "out_of_range": {...}, "noise_floor": {...}} as computed
    by ``latency_models.metrics``; ``selected`` marks the one chosen by cross-validation.
    ``held_out`` keeps every held-out prediction behind those metrics (one dict per point: arch_hash,
    shape, split "random"/"out_of_range", measured_ms, predicted_ms), so parity plots and error
    histograms can be drawn without refitting; None on predictors stored before it was recorded.
    """

    __tablename__ = "hilnas_latency_predictors"
    __table_args__ = (Index("ix_latency_predictor_key", "device", "backend", "phase"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device: Mapped[str] = mapped_column(String(100))
    backend: Mapped[str] = mapped_column(String(100))
    phase: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(100))
    selected: Mapped[bool] = mapped_column(default=False)
    n_measurements: Mapped[int] = mapped_column()
    cv_mape: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict] = mapped_column()
    params: Mapped[dict] = mapped_column()
    model_blob: Mapped[bytes] = mapped_column(LargeBinary)
    held_out: Mapped[list | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
