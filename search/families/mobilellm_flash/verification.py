"""The arithmetic of the verify stage: which candidates to measure, how wrong the predictor was, what is verified.

Kept free of I/O so that it can be tested on hand-made numbers. A candidate is a dict with
``number``, ``loss``, ``params_count``, ``predicted`` ({phase: ms}) and, once measured, ``measured``
({phase: ms}).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from search.pareto import pareto_mask
from search.spec import ConstraintSpec

PHASES = ("prefill", "decode")


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


def feasible(values: dict[str, float], constraints: list[ConstraintSpec]) -> bool:
    return all(c.metric not in values or c.violation(values[c.metric]) <= 0 for c in constraints)


def front(candidates: list[dict[str, Any]], constraints: list[ConstraintSpec], measured_only: bool) -> list[dict]:
    """Feasible Pareto-optimal candidates in (loss, prefill ms, decode ms), sorted by loss.

    ``measured_only`` restricts to measured candidates and judges them by measurements alone
    (the verified front); otherwise measurements override predictions where they exist.
    """
    pool = [c for c in candidates if not measured_only or c.get("measured")]
    pool = [c for c in pool if feasible(_metrics(c, measured_only), constraints)]
    if not pool:
        return []
    points = np.array([[_metrics(c, measured_only)[k] for k in ("loss", "prefill_ms", "decode_ms")] for c in pool])
    mask = pareto_mask(points)
    return sorted((c for c, keep in zip(pool, mask, strict=True) if keep), key=lambda c: c["loss"])


def spread(candidates: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """At most ``k`` candidates spread evenly along a loss-sorted front (both ends kept)."""
    if len(candidates) <= k:
        return list(candidates)
    picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, k)).astype(int))
    return [candidates[i] for i in picks]


def errors_pct(candidates: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per phase, the signed relative error (predicted - measured) / measured in percent of measured candidates."""
    out: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for c in candidates:
        for phase in PHASES:
            if c.get("measured") and phase in c["measured"]:
                measured = float(c["measured"][phase])
                out[phase].append((float(c["predicted"][phase]) - measured) / measured * 100)
    return out


def needs_refit(
    errors: dict[str, list[float]], stated_mape: dict[str, float | None], tolerance: float, min_error_pct: float
) -> dict[str, str]:
    """Phases whose mean absolute error on the front exceeds what their predictor promised, with the reason."""
    reasons = {}
    for phase, values in errors.items():
        if not values:
            continue
        mean_abs = float(np.mean(np.abs(values)))
        promised = stated_mape.get(phase)
        allowed = max(min_error_pct, tolerance * promised) if promised is not None else min_error_pct
        if mean_abs > allowed:
            stated = f"{promised:.1f}%" if promised is not None else "unknown"
            reasons[phase] = (
                f"{phase}: mean error {mean_abs:.1f}% on the front, above {allowed:.1f}% "
                f"({tolerance:g} x the predictor's stated MAPE {stated}, at least {min_error_pct:g}%)"
            )
    return reasons
