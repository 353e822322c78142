"""The measurement cache in ``hilnas_measurements``: nothing is measured twice under the same key.

The key is (architecture hash, device, backend, phase, shape). Only stable rows timed the way the
caller times (``extra["timing"]``: ``protocol.timing_label``, raw or drift-corrected of the current generation)
count as hits; an unstable row, or one timed another way, is re-measured and replaced, and predictors are fitted
on one kind alone.
Reads may happen anywhere (a device actor checks before measuring); writes happen in one process:
the search driver's recorder, or the standalone ``hilnas latency`` commands, which are their own
single writer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Measurement
from db.models.core import measurement_shape_key
from db.session import session_scope
from latency_models.protocol import KEPT_REFERENCE_LABEL

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


def row_timing(row: dict[str, Any]) -> str:
    """How a row was timed (rows stored before the label existed: drift-corrected of the first generation, beside
    the reference loaded once, when they carry a drift)."""
    extra = row.get("extra") or {}
    return extra.get("timing") or (KEPT_REFERENCE_LABEL if "drift" in extra else "raw")


def store_row(session: Session, row: dict[str, Any], **links: Any) -> bool:
    """Add ``row`` (with ``links`` such as search and trial ids) unless a stable row timed the same way holds its
    key; an unstable row, or one timed the other way, is replaced. Whether it was added. Every writer (``save``,
    the search recorder) goes through here, so the rule is the same for all."""
    key = key_clause(row["arch_hash"], row["device"], row["backend"], row["phase"], row["shape"])
    existing = session.scalar(select(Measurement).where(*key))
    if existing is not None:
        if existing.stable and row_timing({"extra": existing.extra}) == row_timing(row):
            return False
        session.delete(existing)
        session.flush()
    fields = {k: row[k] for k in ROW_FIELDS if k in row}
    session.add(Measurement(shape_key=measurement_shape_key(row["shape"]), **fields, **links))
    return True


def key_clause(arch_hash: str, device: str, backend: str, phase: str, shape: dict[str, Any]) -> tuple:
    return (
        Measurement.arch_hash == arch_hash,
        Measurement.device == device,
        Measurement.backend == backend,
        Measurement.phase == phase,
        Measurement.shape_key == measurement_shape_key(shape),
    )


def lookup(
    db_url: str, arch_hash: str, device: str, backend: str, phase: str, shape: dict[str, Any], timing: str | None = None
) -> dict[str, Any] | None:
    """The stable cached row for this key (timed as ``timing`` says, when given), or None when it must be measured."""
    with session_scope(db_url) as session:
        found = session.scalar(
            select(Measurement).where(*key_clause(arch_hash, device, backend, phase, shape), Measurement.stable)
        )
        row = row_of(found) if found is not None else None
    return row if row is not None and (timing is None or row_timing(row) == timing) else None


def save(db_url: str, rows: list[dict[str, Any]]) -> int:
    """Insert rows in one transaction, replacing an unstable row of the same key or one timed the other way;
    returns rows written."""
    with session_scope(db_url) as session:
        return sum(store_row(session, row) for row in rows)


def load(
    db_url: str, device: str, backend: str, stable_only: bool = True, timing: str | None = None
) -> list[dict[str, Any]]:
    """Every measurement of a device and backend (the predictors' training data), only those timed as ``timing``
    says when it is given."""
    with session_scope(db_url) as session:
        query = select(Measurement).where(Measurement.device == device, Measurement.backend == backend)
        if stable_only:
            query = query.where(Measurement.stable)
        rows = [row_of(m) for m in session.scalars(query.order_by(Measurement.id))]
    return [row for row in rows if timing is None or row_timing(row) == timing]
