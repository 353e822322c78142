"""MobileLLM-Flash's fronts for the verify stage: quality against prefill and decode latency, judged on the best
known latency or on measurements alone (the shared arithmetic is in ``search.verification``).

Kept free of I/O so that it can be tested on hand-made numbers. A candidate is a dict with
``number``, ``loss``, ``params_count``, ``predicted`` ({phase: ms}) and, once measured, ``measured``
({phase: ms}).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from search.pareto import pareto_mask
from search.spec import ConstraintSpec
from search.verification import feasible

PHASES = ("prefill", "decode")
OBJECTIVES = ("loss", "prefill_ms", "decode_ms")  # the front's axes, all minimised


def estimate(candidate: dict[str, Any], phase: str) -> float:
    """The best-known latency: the measurement when there is one, else the prediction."""
    measured = candidate.get("measured") or {}
    return float(measured[phase]) if phase in measured else float(candidate["predicted"][phase])


def _metrics(candidate: dict[str, Any], measured_only: bool) -> dict[str, float]:
    """The values constraints and the front are judged by (``params_count`` is the parameter count)."""
    values = {"loss": float(candidate["loss"]), "params": float(candidate.get("params_count") or 0.0)}
    for phase in PHASES:
        latency = float(candidate["measured"][phase]) if measured_only else estimate(candidate, phase)
        values[f"{phase}_ms"] = latency
    return values


def objective_points(candidates: list[dict[str, Any]], measured_only: bool = False) -> np.ndarray:
    """(loss, prefill ms, decode ms) per candidate, one row each, on the best-known or the measured latency."""
    return np.array([[_metrics(c, measured_only)[k] for k in OBJECTIVES] for c in candidates])


def front(candidates: list[dict[str, Any]], constraints: list[ConstraintSpec], measured_only: bool) -> list[dict]:
    """Feasible Pareto-optimal candidates in (loss, prefill ms, decode ms), sorted by loss.

    ``measured_only`` restricts to measured candidates and judges them by measurements alone
    (the verified front); otherwise measurements override predictions where they exist.
    """
    pool = [c for c in candidates if not measured_only or c.get("measured")]
    pool = [c for c in pool if feasible(_metrics(c, measured_only), constraints)]
    if not pool:
        return []
    mask = pareto_mask(objective_points(pool, measured_only))
    return sorted((c for c, keep in zip(pool, mask, strict=True) if keep), key=lambda c: c["loss"])
