"""How much of the drift reference's slowdown to take out of a candidate: the correction's exponent, fitted.

The protocol divides each sample of a candidate by its neighbouring reference block (``protocol``). That assumes
the candidate slows exactly as much as its reference in a slow moment. On some days of the development host it
slowed less: decode steps first timed with the reference 1.2-1.4x its baseline re-measured 9% higher on average,
so dividing had over-corrected them. On others calibration rows showed an elasticity of 0.92 ± 0.09 (prefill) and
1.02 ± 0.14 (decode): dividing was right. So the exponent is estimated, not assumed.

So a drift-corrected latency is ``raw * (baseline / reference) ** exponent`` with an exponent per device, backend
and phase between 0 (raw) and 1 (full division). Each row records the exponent it was timed with (1 before this
existed) and its drift (reference time over baseline), so a row converts to any other exponent
(``at_exponent``): approximately, since the protocol corrects each sample by its own block, not by the median.

``fit_exponent`` estimates the exponent from calibration rows alone: a row's stored latency carries its drift to
the power (elasticity - exponent it was timed with), so the slope of the out-of-fold log error of a predictor that
cannot see the drift, regressed on log drift, estimates the elasticity. It is used only when it stands two
standard errors away from 1; otherwise rows keep dividing by the reference. The fitted predictors keep it
(``fitting``), and the device is measured with it from then on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from latency_models.metrics import MIN_REFERENCE_SPREAD
from latency_models.predictors import FeatureSet, GaussianProcessPredictor, out_of_fold

#: Below this many drift-corrected rows the exponent is not fitted (five folds of a handful say nothing).
MIN_ROWS = 8
#: The exponent of rows and devices that never had one fitted: dividing by the reference, as the protocol did.
FULL = 1.0
#: An elasticity is used only when it is this many standard errors away from ``FULL``.
SIGNIFICANCE = 2.0
_MS_FIELDS = ("median_ms", "p10_ms", "p90_ms")


def row_exponent(row: dict[str, Any]) -> float | None:
    """The exponent ``row`` was timed with (None when it was timed raw, without a reference)."""
    extra = row.get("extra") or {}
    if "drift" not in extra:
        return None
    return float(extra.get("drift_exponent", FULL))


def at_exponent(row: dict[str, Any], exponent: float) -> dict[str, Any]:
    """``row`` as if its samples had been corrected with ``exponent`` (a raw row is returned unchanged)."""
    timed_with = row_exponent(row)
    if timed_with is None or timed_with == exponent:
        return row
    scale = float(row["extra"]["drift"]) ** (timed_with - exponent)
    converted = {**row, **{name: row[name] * scale for name in _MS_FIELDS if row.get(name) is not None}}
    if row.get("samples_ms"):
        converted["samples_ms"] = [sample * scale for sample in row["samples_ms"]]
    converted["extra"] = {**row["extra"], "drift_exponent": exponent, "converted_from_exponent": timed_with}
    return converted


def rows_at_exponent(rows: list[dict[str, Any]] | None, exponent: float) -> list[dict[str, Any]] | None:
    return None if rows is None else [at_exponent(row, exponent) for row in rows]


@dataclass(frozen=True)
class ExponentFit:
    """The exponent chosen for one phase's rows: the estimated elasticity and its standard error behind it, and
    why it was not used when it was not (``reason``; the exponent is then ``FULL``)."""

    exponent: float
    n_rows: int
    elasticity: float | None = None
    stderr: float | None = None
    reason: str | None = None

    def as_metrics(self) -> dict[str, Any]:
        """What a stored predictor records of it."""
        return asdict(self)


#: What a fit that was not asked for reports (``calibration.evaluate_predictors(fit_drift=False)``).
NOT_FITTED = ExponentFit(FULL, 0, reason="not fitted")


def describe(phase: str, fitted: dict[str, Any] | None) -> str:
    """One sentence on the exponent a phase's rows were converted to (``ExponentFit.as_metrics``, as stored)."""
    if fitted is None:
        return f"{phase}: drift correction not fitted (stored before exponents were): divides by the reference."
    estimate = (
        ""
        if fitted["elasticity"] is None
        else f"; candidates slowed {fitted['elasticity']:.2f} ± {fitted['stderr']:.2f} times as much as their "
        f"reference (log-log, over {fitted['n_rows']} calibration rows)"
    )
    used = "divides by the reference" if fitted["reason"] else "takes out that share of the reference's drift"
    why = f" ({fitted['reason']})" if fitted["reason"] else ""
    return f"{phase}: drift exponent {fitted['exponent']:g}{estimate}{why}: the correction {used}."


def fit_exponent(rows: list[dict[str, Any]], features: FeatureSet | None = None) -> ExponentFit:
    """The elasticity of ``rows`` (one phase), from the slope of the Gaussian-process predictor's out-of-fold log
    error on log drift: at rows converted to exponent b that slope is (elasticity - b), shrunk because the
    predictor absorbs part of the drift, so b moves by the slope until none is left (``ROUNDS`` at most). Used
    (0 at the least) only when the first slope, at ``FULL``, is ``SIGNIFICANCE`` standard errors below zero;
    ``FULL`` otherwise, or with too few drift-corrected rows, or when their reference barely moved."""
    corrected = [row for row in rows if row_exponent(row) is not None]
    n = len(corrected)
    if n < MIN_ROWS:
        return ExponentFit(FULL, n, reason=f"{n} drift-corrected rows (< {MIN_ROWS})")
    drifts = np.log([float(row["extra"]["drift"]) for row in corrected])
    if np.ptp(drifts) < MIN_REFERENCE_SPREAD:
        return ExponentFit(FULL, n, reason="the reference barely moved")
    slope, stderr = _error_slope(corrected, drifts, FULL, features)
    if abs(slope) < SIGNIFICANCE * stderr:
        return ExponentFit(FULL, n, FULL + slope, stderr, reason=f"not {SIGNIFICANCE:g} standard errors from 1")
    if slope > 0:
        return ExponentFit(FULL, n, FULL + slope, stderr, reason="above 1; the correction never does more than divide")
    elasticity = FULL + slope
    for _ in range(ROUNDS - 1):
        slope = _error_slope(corrected, drifts, elasticity, features)[0]
        elasticity += slope
        if abs(slope) < 0.01:
            break
    return ExponentFit(round(min(max(elasticity, 0.0), FULL), 2), n, elasticity, stderr)


#: Rounds of ``fit_exponent``'s fixed-point search at most (it stops once b moves by less than 0.01).
ROUNDS = 5


def _error_slope(
    rows: list[dict[str, Any]], log_drifts: np.ndarray, exponent: float, features: FeatureSet | None
) -> tuple[float, float]:
    """Slope and standard error of the out-of-fold log error of ``rows`` at ``exponent`` on their log drift."""
    from latency_models.calibration import training_data

    X, y = training_data(rows_at_exponent(rows, exponent), features)
    error = np.log(y) - np.log(out_of_fold(GaussianProcessPredictor(features=features), X, y))
    fit = stats.linregress(log_drifts, error)
    return float(fit.slope), float(fit.stderr)


def device_exponent(db_url: str, device: str, backend: str, phase: str) -> float:
    """The exponent the device's selected predictor of ``phase`` was fitted with, so that new measurements are
    timed as its training rows were (``FULL`` when none is stored, or one stored before exponents were fitted)."""
    from latency_models.storage import selected_record

    record = selected_record(db_url, device, backend, phase)
    fitted = (record or {}).get("metrics", {}).get("drift_exponent")
    return FULL if fitted is None else float(fitted["exponent"])
