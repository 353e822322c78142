"""The drift correction's exponent: rows convert between exponents, the exponent is fitted from calibration rows
alone, stored with the predictors, and the protocol corrects each sample by it."""

from __future__ import annotations

import pytest

from latency_models.calibration import PredictorReport, evaluate_predictors, training_data
from latency_models.drift_exponent import FULL, ExponentFit, at_exponent, describe, device_exponent, fit_exponent
from latency_models.fitting import store_predictors
from latency_models.metrics import accuracy
from latency_models.predictors import FlopsLinearPredictor, LayerwisePredictor
from latency_models.protocol import DRIFT_CORRECTED, ProtocolConfig, Reference, measure
from tests.latency_support import BACKEND, DEVICE, PEAKS, drifting, simulated_rows
from tests.timing_support import busy_wait_ms

SCORES = {"mape": 1.0, "rmspe": 1.0, "within_5": 1.0, "within_10": 1.0, "kendall_tau": 1.0, "n": 6.0}
METRICS = {"random": SCORES, "out_of_range": SCORES}


def _decode(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["phase"] == "decode"]


def test_a_row_converts_to_another_exponent_and_back() -> None:
    row = drifting(simulated_rows(1, seed=2), elasticity=0.0)[0]
    drift = row["extra"]["drift"]
    half = at_exponent(row, 0.5)
    assert half["median_ms"] == pytest.approx(row["median_ms"] * drift**0.5)
    assert half["samples_ms"][0] == pytest.approx(row["samples_ms"][0] * drift**0.5)
    assert half["extra"]["drift_exponent"] == 0.5 and half["extra"]["converted_from_exponent"] == 1.0
    assert at_exponent(half, 1.0)["median_ms"] == pytest.approx(row["median_ms"])
    raw = simulated_rows(1, seed=2)[0]  # timed without a reference: nothing to convert
    assert at_exponent(raw, 0.5) is raw


@pytest.mark.parametrize("elasticity", [0.3, 0.7])
def test_the_exponent_fitted_on_calibration_rows_is_how_much_candidates_follow_their_reference(
    elasticity: float,
) -> None:
    rows = _decode(drifting(simulated_rows(30, seed=3, noise=0.01), elasticity, seed=4))
    fitted = fit_exponent(rows)
    assert fitted.exponent == pytest.approx(elasticity, abs=0.15) and fitted.reason is None
    assert fitted.elasticity == pytest.approx(elasticity, abs=2 * fitted.stderr + 0.02)
    assert fitted.n_rows == 30
    assert "takes out that share" in describe("decode", fitted.as_metrics())


def test_an_elasticity_not_clearly_below_one_keeps_dividing_by_the_reference() -> None:
    rows = _decode(drifting(simulated_rows(30, seed=3, noise=0.05), elasticity=0.9, seed=5))
    fitted = fit_exponent(rows)
    assert fitted.exponent == FULL and "standard errors" in fitted.reason
    assert abs(fitted.elasticity - FULL) < 2 * fitted.stderr
    assert "divides by the reference" in describe("decode", fitted.as_metrics())
    above = fit_exponent(_decode(drifting(simulated_rows(30, seed=3, noise=0.01), elasticity=1.3, seed=4)))
    assert above.exponent == FULL and above.elasticity > FULL and "never does more than divide" in above.reason


def test_without_drift_to_learn_from_the_exponent_stays_at_dividing() -> None:
    rows = _decode(simulated_rows(12, seed=5))
    quiet = [{**row, "extra": {"timing": DRIFT_CORRECTED, "drift": 1.01}} for row in rows]
    assert fit_exponent(quiet).exponent == FULL and "barely moved" in fit_exponent(quiet).reason
    assert fit_exponent(quiet[:5]).reason.startswith("5 drift-corrected rows")
    assert fit_exponent(rows).reason.startswith("0 drift-corrected rows")  # raw timing: no exponent at all


def test_held_out_rows_are_scored_at_the_exponent_fitted_on_the_calibration_rows() -> None:
    rows = _decode(drifting(simulated_rows(32, seed=6, noise=0.01), elasticity=0.4, seed=7))
    train, held_out = rows[:24], rows[24:]
    reports = evaluate_predictors(train, PEAKS, held_out)
    layerwise = next(r for r in reports if r.name == "layerwise")
    assert layerwise.drift.exponent == pytest.approx(0.4, abs=0.15)
    scored = {p["arch_hash"]: p["measured_ms"] for p in layerwise.held_out if p["split"] == "random"}
    assert scored[held_out[0]["arch_hash"]] == pytest.approx(
        at_exponent(held_out[0], layerwise.drift.exponent)["median_ms"]
    )
    # Dividing over-corrects by up to 1.45 ** 0.6 (25%); at the fitted exponent little more than the 1% noise is left.
    X, y = training_data(train)
    hx, hy = training_data(held_out)
    dividing = accuracy(hy, LayerwisePredictor().fit(X, y).predict(hx))["mape"]
    assert layerwise.metrics["random"]["mape"] < dividing / 2


def test_the_device_is_measured_at_the_exponent_its_predictors_were_fitted_with(sqlite_url: str) -> None:
    assert device_exponent(sqlite_url, DEVICE, BACKEND, "decode") == FULL  # nothing fitted yet
    rows = _decode(simulated_rows(6, seed=8))
    predictor = FlopsLinearPredictor().fit(*training_data(rows))
    for exponent in (0.55, FULL):
        fitted = ExponentFit(exponent, 30, exponent, 0.05, None if exponent < FULL else "not 2 standard errors from 1")
        store_predictors(
            sqlite_url,
            device=DEVICE,
            backend=BACKEND,
            reports={"decode": [PredictorReport("flops-linear", predictor, True, 1.0, METRICS, 6, drift=fitted)]},
        )
        assert device_exponent(sqlite_url, DEVICE, BACKEND, "decode") == exponent  # the newest fit is measured with


@pytest.mark.timing
def test_a_partial_exponent_takes_out_part_of_the_references_slowdown() -> None:
    # The reference always runs at 4x its 1-ms baseline; the candidate takes 1 ms.
    config = ProtocolConfig(warmup=0, min_repeats=5, max_repeats=5, ci_half_width=0.5, min_time_s=0.0, attempts=1)
    reference = Reference(run=lambda: busy_wait_ms(4.0), baseline_ms=1.0, exponent=0.5)
    timing = measure(lambda: busy_wait_ms(1.0), config, reference)
    assert timing.median_ms == pytest.approx(1.0 * (1.0 / 4.0) ** 0.5, rel=0.15)
    assert Reference(run=lambda: None, baseline_ms=2.0).correction(4.0) == 0.5  # exponent 1: divide
