"""Pareto fronts and hypervolume, using Optuna's implementations.

Everything here works on minimisation; ``to_minimization`` flips maximised objectives first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Optuna's non-domination and WFG hypervolume code; these modules are private but their functions
# are what Study.best_trials and Optuna's hypervolume history plot use, so results match Optuna's.
from optuna._hypervolume import compute_hypervolume
from optuna.study._multi_objective import _is_pareto_front


def to_minimization(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Negate the columns of maximised objectives so that smaller is better everywhere."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * signs


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of non-dominated rows (minimisation); duplicates of a front point all count."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    return _is_pareto_front(values, assume_unique_lexsorted=False)


def hypervolume(values: np.ndarray, reference: Sequence[float]) -> float:
    """Hypervolume dominated by ``values`` (minimisation) and bounded by ``reference``.

    Points that do not strictly dominate the reference point contribute nothing.
    """
    values = np.asarray(values, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if len(values) == 0:
        return 0.0
    inside = np.all(values < reference, axis=1)
    if not inside.any():
        return 0.0
    front = values[inside][pareto_mask(values[inside])]
    return float(compute_hypervolume(front, reference, assume_pareto=False))
