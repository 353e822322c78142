"""Observations a scaling law is fitted to, checked once so that the fitting code can trust them.

A point is one (model size N, training tokens D, loss) triple with optional data-quality columns:
``diversity`` (higher is more diverse, e.g. a compression ratio), ``syntheticity`` (higher is more
teacher-like) and ``unique_tokens`` (for repeated data). Every problem with the input is a
one-sentence ``UserError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hilnas.errors import UserError

REQUIRED_COLUMNS = ("N", "D", "loss")
OPTIONAL_COLUMNS = ("diversity", "syntheticity", "unique_tokens")
#: Columns that must be strictly positive wherever they are given.
POSITIVE_COLUMNS = ("N", "D", "loss", "diversity", "unique_tokens")


@dataclass(frozen=True)
class ScalingData:
    """Validated observations as float arrays; optional columns are ``None`` when absent."""

    N: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    diversity: np.ndarray | None = None
    syntheticity: np.ndarray | None = None
    unique_tokens: np.ndarray | None = None
    labels: tuple[str, ...] = field(default=())  # e.g. the data mixture of each point, for plots

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def sizes(self) -> np.ndarray:
        """The distinct model sizes, ascending."""
        return np.unique(self.N)

    def column(self, name: str) -> np.ndarray | None:
        return getattr(self, name)

    def subset(self, mask: np.ndarray) -> ScalingData:
        """The points selected by a boolean mask or an index array (indices may repeat)."""
        arrays = {name: (None if self.column(name) is None else self.column(name)[mask]) for name in _ARRAY_FIELDS}
        labels = tuple(np.asarray(self.labels, dtype=object)[mask]) if self.labels else ()
        return replace(self, **arrays, labels=labels)


_ARRAY_FIELDS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


def make_scaling_data(frame: pd.DataFrame, origin: str = "the data") -> ScalingData:
    """Check a frame with columns N, D, loss[, diversity, syntheticity, unique_tokens, label]."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(
            f"{origin} lacks the column(s) {', '.join(missing)}; a scaling fit needs N, D and loss "
            f"(optional: {', '.join(OPTIONAL_COLUMNS)})."
        )
    if len(frame) == 0:
        raise UserError(f"{origin} has no rows.")
    arrays: dict[str, np.ndarray | None] = {}
    for name in _ARRAY_FIELDS:
        if name not in frame.columns:
            arrays[name] = None
            continue
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(f"{origin} has a missing, NaN or non-numeric {name} in row {row + 1}.")
        if name in POSITIVE_COLUMNS and (values <= 0).any():
            row = int(np.flatnonzero(values <= 0)[0])
            raise UserError(f"{origin} has a non-positive {name} ({values[row]:g}) in row {row + 1}; it must be > 0.")
        arrays[name] = values
    labels = tuple(str(v) for v in frame["label"]) if "label" in frame.columns else ()
    return ScalingData(**arrays, labels=labels)


def read_scaling_csv(path: str | Path) -> ScalingData:
    """Load a user's CSV of (N, D, loss[, diversity, syntheticity, unique_tokens, label])."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No CSV file at {path}.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read {path} as CSV: {str(exc).strip().splitlines()[0]}.") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return make_scaling_data(frame, origin=f"The CSV {path}")
