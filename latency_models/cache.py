"""The measurement cache in ``hilnas_measurements``: nothing is measured twice under the same key.

The key is (architecture hash, device, backend, phase, shape). Only stable rows count as hits;
an unstable row is re-measured and replaced. Reads may happen anywhere (a device actor checks
before measuring); writes happen in one process: the search driver's recorder, or the
standalone ``hilnas latency`` commands, which are their own single writer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.models import Measurement
from db.models.core import measurement_shape_key
from db.session import session_scope

ROW_FIELDS = (
    "arch_hash",
    "architecture",
    "device",
    "backend",
    "phase",
    "shape",
    "stage",
    "median_ms",
    "p10_ms",
    "p90_ms",
    "cv",
    "n_samples",
    "samples_ms",
    "stable",
    "fingerprint",
    "extra",
)


def row_of(measurement: Measurement) -> dict[str, Any]:
    return {name: getattr(measurement, name) for name in ROW_FIELDS}


def key_clause(arch_hash: str, device: str, backend: str, phase: str, shape: dict[str, Any]) -> tuple:
    return (
        Measurement.arch_hash == arch_hash,
        Measurement.device == device,
        Measurement.backend == backend,
        Measurement.phase == phase,
        Measurement.shape_key == measurement_shape_key(shape),
    )


def lookup(
    db_url: str, arch_hash: str, device: str, backend: str, phase: str, shape: dict[str, Any]
) -> dict[str, Any] | None:
    """The stable cached row for this key, or None when it must be measured."""
    with session_scope(db_url) as session:
        found = session.scalar(
            select(Measurement).where(*key_clause(arch_hash, device, backend, phase, shape), Measurement.stable)
        )
        return row_of(found) if found is not None else None


def save(db_url: str, rows: list[dict[str, Any]]) -> int:
    """Insert rows in one transaction, replacing an unstable row of the same key; returns rows written."""
    written = 0
    with session_scope(db_url) as session:
        for row in rows:
            key = key_clause(row["arch_hash"], row["device"], row["backend"], row["phase"], row["shape"])
            existing = session.scalar(select(Measurement).where(*key))
            if existing is not None and existing.stable:
                continue
            if existing is not None:
                session.delete(existing)
                session.flush()
            session.add(Measurement(shape_key=measurement_shape_key(row["shape"]), **{k: row[k] for k in ROW_FIELDS}))
            written += 1
    return written


def load(db_url: str, device: str, backend: str, stable_only: bool = True) -> list[dict[str, Any]]:
    """Every measurement of a device and backend (the predictors' training data)."""
    with session_scope(db_url) as session:
        query = select(Measurement).where(Measurement.device == device, Measurement.backend == backend)
        if stable_only:
            query = query.where(Measurement.stable)
        return [row_of(m) for m in session.scalars(query.order_by(Measurement.id))]
