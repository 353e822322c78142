"""Chinchilla approach 3: fit L(N, D_eff) = E + A / N^alpha + B / D_eff^beta robustly.

Following Hoffmann et al. (2022), the law is fitted in log-sum-exp form,
log L = LSE(a - alpha log N, b - beta log D_eff, e) with A = e^a, B = e^b, E = e^e, by minimising the
summed Huber loss (delta = 1e-3) between predicted and observed log loss with L-BFGS from a grid of
starts. Gradients are exact (hand-derived below) because finite differences at Huber's scale are noisy.

One departure, for speed: the objective is evaluated at every grid point first and L-BFGS runs only
from the ``max_starts`` best of them (``max_starts=None`` runs from all, as Chinchilla did). A fit in
which no start converges raises ``FitDidNotConverge`` instead of returning its last iterate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from hilnas.errors import UserError
from search.scaling.data import ScalingData
from search.scaling.forms import DeffForm

HUBER_DELTA = 1e-3
CORE_PARAMS = ("e", "a", "b", "alpha", "beta")
CORE_BOUNDS = ((-5.0, 5.0), (-10.0, 60.0), (-10.0, 60.0), (1e-3, 4.0), (1e-3, 4.0))
#: Starting grid of the core parameters, close to Chinchilla's (their a, b also step by 5).
DEFAULT_GRID = {
    "e": (-1.0, 0.0, 1.0),
    "a": (0.0, 5.0, 10.0, 15.0, 20.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0),
    "alpha": (0.2, 0.5, 1.0),
    "beta": (0.2, 0.5, 1.0),
}
DEFAULT_MAX_STARTS = 24


class FitDidNotConverge(UserError):
    """No L-BFGS start converged; the message says how many were tried."""


@dataclass(frozen=True)
class LawFit:
    """A fitted law: the parameter vector (log-space core parameters, then the form's) and how it was found."""

    form: DeffForm
    theta: np.ndarray
    objective: float
    n_starts: int
    n_converged: int
    n_points: int

    @property
    def params(self) -> dict[str, float]:
        """Readable constants: E, A, B, alpha, beta and the form's parameters."""
        return readable_params(self.theta, self.form)

    @property
    def at_bounds(self) -> list[str]:
        """Readable names of parameters that ended on a bound: the data did not pin them down inside it."""
        names = list(readable_params(self.theta, self.form))
        bounds = CORE_BOUNDS + self.form.bounds
        return [
            name
            for name, value, (low, high) in zip(names, self.theta, bounds, strict=True)
            if min(value - low, high - value) <= 1e-6 * max(1.0, abs(value))
        ]

    def predict_log(self, data: ScalingData) -> np.ndarray:
        return predict_log_loss(self.theta, self.form, data)

    def predict(self, data: ScalingData) -> np.ndarray:
        return np.exp(self.predict_log(data))


def readable_params(theta: np.ndarray, form: DeffForm) -> dict[str, float]:
    """E, A, B (exponentiated from the log-space fit), alpha, beta, then the form's parameters."""
    e, a, b, alpha, beta = theta[:5]
    named = {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta}
    named.update(zip(form.param_names, theta[5:], strict=True))
    return {k: float(v) for k, v in named.items()}


def _terms(theta: np.ndarray, form: DeffForm, data: ScalingData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    e, a, b, alpha, beta = theta[:5]
    log_deff, jac = form.log_deff(theta[5:], data)
    terms = np.column_stack([a - alpha * np.log(data.N), b - beta * log_deff, np.full(len(data), e)])
    return terms, log_deff, jac


def predict_log_loss(theta: np.ndarray, form: DeffForm, data: ScalingData) -> np.ndarray:
    terms, _, _ = _terms(theta, form, data)
    top = terms.max(axis=1)
    return top + np.log(np.exp(terms - top[:, None]).sum(axis=1))


def huber_objective(theta: np.ndarray, form: DeffForm, data: ScalingData) -> tuple[float, np.ndarray]:
    """Summed Huber loss of log-loss residuals divided by delta, and its gradient.

    Dividing by delta leaves the minimiser unchanged and puts the objective in units of summed absolute
    log-residual, where L-BFGS's default tolerances mean something.
    """
    terms, log_deff, jac = _terms(theta, form, data)
    top = terms.max(axis=1)
    weights = np.exp(terms - top[:, None])
    total = weights.sum(axis=1)
    residual = top + np.log(total) - np.log(data.loss)
    weights /= total[:, None]  # softmax: d LSE / d term
    small = np.abs(residual) <= HUBER_DELTA
    loss = np.where(small, 0.5 * residual**2, HUBER_DELTA * (np.abs(residual) - 0.5 * HUBER_DELTA)).sum()
    slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA)
    p_a, p_b, p_e = weights[:, 0] * slope, weights[:, 1] * slope, weights[:, 2] * slope
    beta = theta[4]
    grad = np.concatenate(
        [
            [p_e.sum(), p_a.sum(), p_b.sum(), -(p_a * np.log(data.N)).sum(), -(p_b * log_deff).sum()],
            -beta * (p_b[:, None] * jac).sum(axis=0),
        ]
    )
    return float(loss / HUBER_DELTA), grad / HUBER_DELTA


def start_grid(form: DeffForm, grid: dict[str, tuple[float, ...]] | None = None) -> np.ndarray:
    """Every combination of the core grid and the form's starting values (rows are parameter vectors)."""
    grid = grid or DEFAULT_GRID
    axes = [grid[name] for name in CORE_PARAMS] + list(form.start_values)
    return np.array(list(itertools.product(*axes)), dtype=float)


def _screen(starts: np.ndarray, form: DeffForm, data: ScalingData) -> np.ndarray:
    """The objective at every start, vectorised over the core grid for each distinct form-parameter start."""
    values = np.empty(len(starts))
    log_n, log_loss = np.log(data.N), np.log(data.loss)
    form_part = starts[:, len(CORE_PARAMS) :]
    for form_theta in np.unique(form_part, axis=0):
        rows = np.flatnonzero((form_part == form_theta).all(axis=1))
        e, a, b, alpha, beta = starts[rows, : len(CORE_PARAMS)].T[:, :, None]
        log_deff, _ = form.log_deff(form_theta, data)
        terms = np.stack([a - alpha * log_n, b - beta * log_deff, np.broadcast_to(e, a.shape) + 0 * log_n])
        residual = np.logaddexp.reduce(terms, axis=0) - log_loss
        huber = np.where(
            np.abs(residual) <= HUBER_DELTA, 0.5 * residual**2, HUBER_DELTA * (np.abs(residual) - 0.5 * HUBER_DELTA)
        )
        values[rows] = huber.sum(axis=1) / HUBER_DELTA
    return values


def check_fittable(data: ScalingData, form: DeffForm) -> None:
    """Bad-input checks that depend on the law: enough points and sizes for its parameters."""
    form.check_data(data)
    n_params = len(CORE_PARAMS) + len(form.param_names)
    if len(data) < n_params:
        raise UserError(
            f"The {form.name!r} law has {n_params} parameters but the data has only {len(data)} points; "
            "add points or choose a form with fewer parameters."
        )
    if len(data.sizes) < 2:
        raise UserError("A scaling fit needs points from at least two model sizes N.")
    if len(np.unique(data.D)) < 2:
        raise UserError("A scaling fit needs points at at least two token counts D.")


def fit_law(
    data: ScalingData,
    form: DeffForm,
    *,
    grid: dict[str, tuple[float, ...]] | None = None,
    max_starts: int | None = DEFAULT_MAX_STARTS,
    max_iterations: int = 15000,
) -> LawFit:
    """The best converged L-BFGS solution over the grid's most promising starts (see module docstring)."""
    check_fittable(data, form)
    starts = start_grid(form, grid)
    if max_starts is not None and len(starts) > max_starts:
        starts = starts[np.argsort(_screen(starts, form, data), kind="stable")[:max_starts]]
    bounds = CORE_BOUNDS + form.bounds
    best: tuple[float, np.ndarray] | None = None
    n_converged = 0
    # Tiny problems: BLAS threads only contend with each other (measured 8x slower on 2 busy cores).
    with threadpool_limits(limits=1):
        for start in starts:
            result = minimize(
                huber_objective,
                start,
                args=(form, data),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": max_iterations},
            )
            if not (result.success and np.isfinite(result.fun) and np.all(np.isfinite(result.x))):
                continue
            n_converged += 1
            if best is None or result.fun < best[0]:
                best = (float(result.fun), result.x)
    if best is None:
        raise FitDidNotConverge(
            f"The {form.name!r} law did not converge from any of {len(starts)} L-BFGS starts; "
            "check the data or widen the start grid."
        )
    return LawFit(form, best[1], best[0], len(starts), n_converged, len(data))


@dataclass(frozen=True)
class Bootstrap:
    """Parameter vectors refitted on resampled model sizes, and how many resamples failed to fit."""

    thetas: np.ndarray  # (successful resamples, parameters)
    n_requested: int
    n_failed: int

    def intervals(self, form: DeffForm, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile intervals of the readable constants."""
        if len(self.thetas) == 0:
            return {}
        readable = [readable_params(t, form) for t in self.thetas]
        tail = (1.0 - level) / 2.0 * 100.0
        return {
            name: tuple(float(v) for v in np.percentile([r[name] for r in readable], [tail, 100.0 - tail]))
            for name in readable[0]
        }


def bootstrap_law(
    data: ScalingData,
    base: LawFit,
    *,
    n_resamples: int = 100,
    seed: int = 0,
    max_starts: int | None = DEFAULT_MAX_STARTS,
) -> Bootstrap:
    """Refit on resamples that draw whole model sizes with replacement.

    Points of one size share a model and its training run, so they are not independent; resampling
    sizes (a cluster bootstrap) keeps that structure. scipy.stats.bootstrap resamples single
    observations and takes a vectorised statistic, so it does not fit here. Each resample is fitted by
    the same procedure as the full data (same grid and number of starts), not warm-started from the
    full-data solution: with delta = 1e-3 and noisy losses the Huber loss acts like an L1 loss, whose
    optimum is a sticky vertex, and a warm start would return it for nearly every resample. A resample
    with fewer than two distinct sizes, or that does not converge, counts as failed.
    """
    rng = np.random.default_rng(seed)
    sizes = data.sizes
    members = [np.flatnonzero(data.N == n) for n in sizes]
    thetas, failed = [], 0
    for _ in range(n_resamples):
        drawn = rng.integers(0, len(sizes), size=len(sizes))
        if len(np.unique(drawn)) < 2:
            failed += 1
            continue
        resample = data.subset(np.concatenate([members[i] for i in drawn]))
        try:
            refit = fit_law(resample, base.form, max_starts=max_starts)
        except UserError:
            failed += 1
            continue
        thetas.append(refit.theta)
    return Bootstrap(np.array(thetas).reshape(len(thetas), len(base.theta)), n_resamples, failed)
