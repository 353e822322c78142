"""The arithmetic every staged pipeline's verify stage shares: which predicted-front candidates to measure, how
far the predictor was off on them, and whether that calls for a refit.

Free of I/O so that it can be tested on hand-made numbers. A candidate is a dict whose ``predicted`` maps a
latency phase to milliseconds and, once measured, whose ``measured`` does the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from search.pareto import hypervolume
from search.spec import ConstraintSpec
from search.staged_plans import VerifyPlan


def feasible(values: dict[str, float], constraints: list[ConstraintSpec]) -> bool:
    """Every constraint on a metric in ``values`` holds (constraints on other metrics do not apply)."""
    return all(c.metric not in values or c.violation(values[c.metric]) <= 0 for c in constraints)


def most_hypervolume(
    candidates: list[dict[str, Any]],
    points: np.ndarray,
    k: int,
    kept: np.ndarray | None = None,
    population: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """At most ``k`` candidates, chosen greedily for the hypervolume their ``points`` (one row of minimised
    objectives per candidate) dominate together with the ``kept`` points (the front already measured), kept in
    their given order.

    The verified front is judged by its hypervolume, so a few measurements go where the predicted front has
    most of it rather than evenly along it, and a later round fills what the measured points leave open.
    Objectives are scaled to [0, 1] over the ``population`` (every candidate of the search; default: the points
    given) and the reference point is 1.1 in each, as the search's own hypervolume is: scaled over the front
    alone, its extremes would weigh as much as its knee.
    """
    if len(candidates) <= k:
        return list(candidates)
    width = points.shape[1]
    kept = np.empty((0, width)) if kept is None else np.asarray(kept, dtype=float).reshape(-1, width)
    every = np.vstack([points, kept] + ([] if population is None else [np.asarray(population, dtype=float)]))
    low, high = every.min(axis=0), every.max(axis=0)
    scale = np.where(high > low, high - low, 1.0)
    scaled, scaled_kept = (points - low) / scale, (kept - low) / scale
    reference = np.full(width, 1.1)
    chosen: list[int] = []
    for _ in range(k):
        remaining = [i for i in range(len(candidates)) if i not in chosen]
        chosen.append(
            max(remaining, key=lambda i: hypervolume(np.vstack([scaled_kept, scaled[[*chosen, i]]]), reference))
        )
    return [candidates[i] for i in sorted(chosen)]


def points_to_measure(
    candidates: list[dict[str, Any]],
    front_of: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    point_of: Callable[[dict[str, Any]], np.ndarray],
    k: int,
) -> list[dict[str, Any]]:
    """A verify round's choice: up to ``k`` unmeasured candidates of the predicted front (``front_of``, on the
    best-known latency) adding most hypervolume to its measured points, scaled over every candidate. Candidates
    that failed to measure are left out, so a later round does not retry them."""
    measurable = [c for c in candidates if not c.get("failed")]
    predicted_front = front_of(measurable)
    new = [c for c in predicted_front if not c.get("measured")]
    if not new:
        return []
    kept = [point_of(c) for c in predicted_front if c.get("measured")]
    points = np.array([point_of(c) for c in new])
    population = np.array([point_of(c) for c in measurable])
    return most_hypervolume(new, points, k, np.array(kept) if kept else None, population)


def errors_pct(candidates: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per predicted phase, the signed error (predicted - measured) / measured in percent, over the candidates
    measured in that phase."""
    errors: dict[str, list[float]] = {}
    for candidate in candidates:
        measured = candidate.get("measured") or {}
        for phase, predicted in candidate["predicted"].items():
            if phase in measured:
                truth = float(measured[phase])
                errors.setdefault(phase, []).append((float(predicted) - truth) / truth * 100)
    return errors


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


def another_round(plan: VerifyPlan, refit_reasons: dict[str, str], rounds_done: int, measured_now: int) -> bool:
    """Whether the verify stage measures another round: rounds are left, the last one measured something, and
    either the predictor is refitted (its new front needs checking) or the plan spends every round."""
    if rounds_done >= plan.max_rounds or measured_now == 0:
        return False
    return bool(refit_reasons) or not plan.stop_when_accurate


def refit_reasons_between_rounds(plan: VerifyPlan, refit_reasons: dict[str, str], measured: int) -> list[str]:
    """Why the predictor is refitted before the next round: its error on the front, or, when the plan spends
    every round, the new measurements themselves (on a few calibration points each one moves the fit)."""
    if refit_reasons or plan.stop_when_accurate:
        return list(refit_reasons.values())
    return [f"{measured} front points measured since the last fit"]
