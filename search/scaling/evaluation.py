"""Honest evaluation of a fitted law: extrapolation to an unseen size, correlations, uncertainty.

The headline number is the held-out error: the law is refitted without the largest model size and
asked to predict that size's losses. Correlations (Pearson and Spearman, scipy.stats) between predicted
and observed loss are reported overall and within each size, where quality terms have to explain the
ordering of points that share N.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import pearsonr, spearmanr

from hilnas.errors import UserError
from search.scaling.data import ScalingData
from search.scaling.forms import DeffForm, forms_for, get_form
from search.scaling.law import DEFAULT_MAX_STARTS, Bootstrap, LawFit, bootstrap_law, fit_law


@dataclass(frozen=True)
class Correlation:
    pearson: float
    spearman: float
    n_points: int


@dataclass(frozen=True)
class HeldOut:
    """Relative error |predicted - observed| / observed at the largest size, fitted without it."""

    size: float
    n_points: int
    mean_rel_error: float | None = None
    max_rel_error: float | None = None
    failure: str | None = None  # why the held-out fit could not be made, when it could not


@dataclass
class LawReport:
    """Everything ``hilnas scaling fit`` stores about one form."""

    form: DeffForm
    fit: LawFit
    bootstrap: Bootstrap
    intervals: dict[str, tuple[float, float]]
    held_out: HeldOut
    overall: Correlation
    per_size: dict[float, Correlation]
    fit_seconds: float
    bootstrap_seconds: float
    figures: dict[str, str] = field(default_factory=dict)  # plotly JSON by figure name

    def summary(self) -> dict:
        """JSON-ready numbers (NaN becomes None) for the store and for printing."""
        return {
            "form": self.form.name,
            "params": self.fit.params,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "at_bounds": self.fit.at_bounds,
            "objective": self.fit.objective,
            "starts": self.fit.n_starts,
            "converged_starts": self.fit.n_converged,
            "bootstrap": {"requested": self.bootstrap.n_requested, "failed": self.bootstrap.n_failed},
            "held_out": _clean(vars(self.held_out)),
            "pearson": _nan_to_none(self.overall.pearson),
            "spearman": _nan_to_none(self.overall.spearman),
            "per_size": {
                f"{n:g}": {"pearson": _nan_to_none(c.pearson), "spearman": _nan_to_none(c.spearman), "n": c.n_points}
                for n, c in self.per_size.items()
            },
            "fit_seconds": self.fit_seconds,
            "bootstrap_seconds": self.bootstrap_seconds,
        }


def _nan_to_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _clean(values: dict) -> dict:
    return {k: (_nan_to_none(v) if isinstance(v, float) else v) for k, v in values.items()}


def correlation(predicted: np.ndarray, observed: np.ndarray) -> Correlation:
    """Pearson and Spearman; NaN where they are undefined (fewer than 3 points or a constant side)."""
    if len(observed) < 3 or np.ptp(observed) == 0 or np.ptp(predicted) == 0:
        return Correlation(math.nan, math.nan, len(observed))
    return Correlation(float(pearsonr(predicted, observed)[0]), float(spearmanr(predicted, observed)[0]), len(observed))


def held_out_error(data: ScalingData, form: DeffForm, max_starts: int | None = DEFAULT_MAX_STARTS) -> HeldOut:
    """Fit without the largest size, predict it; a fit that cannot be made is reported, not hidden."""
    largest = float(data.sizes[-1])
    test = data.N == largest
    try:
        fit = fit_law(data.subset(~test), form, max_starts=max_starts)
    except UserError as exc:
        return HeldOut(largest, int(test.sum()), failure=exc.message)
    held = data.subset(test)
    errors = np.abs(fit.predict(held) - held.loss) / held.loss
    return HeldOut(largest, int(test.sum()), float(errors.mean()), float(errors.max()))


def evaluate_form(
    data: ScalingData,
    form: DeffForm,
    *,
    n_resamples: int = 100,
    seed: int = 0,
    max_starts: int | None = DEFAULT_MAX_STARTS,
) -> LawReport:
    """Fit, bootstrap, held-out extrapolation and correlations for one form."""
    started = time.perf_counter()
    fit = fit_law(data, form, max_starts=max_starts)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    boot = bootstrap_law(data, fit, n_resamples=n_resamples, seed=seed, max_starts=max_starts)
    bootstrap_seconds = time.perf_counter() - started
    predicted = fit.predict(data)
    per_size = {float(n): correlation(predicted[data.N == n], data.loss[data.N == n]) for n in data.sizes}
    return LawReport(
        form=form,
        fit=fit,
        bootstrap=boot,
        intervals=boot.intervals(form),
        held_out=held_out_error(data, form, max_starts),
        overall=correlation(predicted, data.loss),
        per_size=per_size,
        fit_seconds=fit_seconds,
        bootstrap_seconds=bootstrap_seconds,
    )


def evaluate_forms(
    data: ScalingData,
    forms: list[str] | None = None,
    *,
    n_resamples: int = 100,
    seed: int = 0,
    max_starts: int | None = DEFAULT_MAX_STARTS,
) -> list[LawReport]:
    """Every requested form (default: all the data supports), always with the raw-D law first."""
    names = forms or forms_for(data)
    names = ["raw"] + [n for n in dict.fromkeys(names) if n != "raw"]
    resolved = [get_form(n) for n in names]
    for form in resolved:
        form.check_data(data)
    return [evaluate_form(data, f, n_resamples=n_resamples, seed=seed, max_starts=max_starts) for f in resolved]
