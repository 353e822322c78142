"""The one latency-fitting service: fit every predictor per phase, store them, predict with the selected one.

``hilnas latency calibrate`` and the staged MobileLLM-Flash pipeline both fit through
``fit_and_store``; the search stage predicts through ``predict_ms``; the verification stage
compares the errors it measures with what the selected predictor promised, ``stated_accuracy``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from hilnas.errors import UserError
from latency_models import cache, storage
from latency_models.calibration import PredictorReport, evaluate_predictors
from latency_models.features import phase_features
from latency_models.measure import PHASES
from latency_models.predictors import FeatureSet, cache_knee
from search.families.mobilellm_flash.space import ArchConfig, Workload

#: Fewer stable rows than this leave cross-validation and the out-of-range split without a test point.
MIN_ROWS_PER_PHASE = 4


def fit_predictors(
    rows: list[dict[str, Any]],
    device: str,
    backend: str,
    peaks: dict[str, float] | None,
    *,
    phases: tuple[str, ...] = PHASES,
    features: FeatureSet | None = None,
    fit_drift: bool = True,
) -> dict[str, list[PredictorReport]]:
    """Every predictor fitted and scored per phase on the stable ``rows`` (with the drift correction's exponent
    fitted per phase first, unless ``fit_drift`` is False: ``calibration.evaluate_predictors``); nothing is stored.

    Unstable rows are left out (never silently used); every phase is checked before any fitting,
    so a shortfall in one phase costs no time fitting the other. Another family passes its
    ``phases`` and ``features`` (default: MobileLLM's prefill and decode).
    """
    foreign = {(r["device"], r["backend"]) for r in rows} - {(device, backend)}
    if foreign:
        other_device, other_backend = sorted(foreign)[0]
        raise UserError(
            f"Measurements of {other_device} ({other_backend}) were given to fit predictors for {device} ({backend})."
        )
    by_phase = {phase: [r for r in rows if r["stable"] and r["phase"] == phase] for phase in phases}
    for phase, phase_rows in by_phase.items():
        if len(phase_rows) < MIN_ROWS_PER_PHASE:
            raise UserError(
                f"Only {len(phase_rows)} stable {phase} measurements of {device} ({backend}) are available, "
                f"{MIN_ROWS_PER_PHASE} are needed; measure more architectures (raise --budget)."
            )
    return {
        phase: evaluate_predictors(phase_rows, peaks, features=features, fit_drift=fit_drift)
        for phase, phase_rows in by_phase.items()
    }


def store_predictors(
    db_url: str,
    *,
    device: str,
    backend: str,
    reports: dict[str, list[PredictorReport]],
    noise_floors: dict[str, dict | None] | None = None,
) -> dict[str, list[int]]:
    """Store every fitted predictor with its metrics (plus the phase's noise floor, the drift exponent its rows
    were converted to, which the device is measured with from then on, and its cache knee) and held-out points."""
    floors = noise_floors or {}
    ids: dict[str, list[int]] = {}
    for phase, phase_reports in reports.items():
        ids[phase] = [
            storage.save_predictor(
                db_url,
                device=device,
                backend=backend,
                phase=phase,
                predictor=report.predictor,
                n_measurements=report.n_train,
                metrics={
                    **report.metrics,
                    "noise_floor": floors.get(phase),
                    "drift_exponent": report.drift.as_metrics(),
                    "cache_knee": cache_knee(report.predictor),
                },
                cv_mape=report.cv_mape,
                selected=report.selected,
                held_out=report.held_out,
            )
            for report in phase_reports
        ]
    return ids


def fit_and_store(
    db_url: str,
    *,
    device: str,
    backend: str,
    peaks: dict[str, float] | None,
    noise_floors: dict[str, dict | None] | None = None,
    rows: list[dict[str, Any]] | None = None,
    timing: str | None = None,
    phases: tuple[str, ...] = PHASES,
    features: FeatureSet | None = None,
    fit_drift: bool = True,
) -> dict[str, list[PredictorReport]]:
    """Fit every predictor per phase on ``rows`` (default: every stable cached row of the device and
    backend), store each with its metrics and held-out predictions, and return the reports.

    ``peaks`` ({"peak_gflops", "bandwidth_gbs"}) feed the roofline; when None, the device's latest
    stored profile is used, and without one the roofline is left out. ``noise_floors`` per phase are
    stored beside each predictor's metrics. Raises ``UserError`` before storing anything when a
    phase has fewer than four stable rows. Without ``rows``, the store's rows timed as ``timing`` says (see
    ``protocol.timing_label``; None: all). ``phases``, ``features`` and ``fit_drift``: as ``fit_predictors``.
    """
    if rows is None:
        rows = cache.load(db_url, device, backend, timing=timing)
    if peaks is None:
        peaks = storage.latest_profile(db_url, device)
    reports = fit_predictors(rows, device, backend, peaks, phases=phases, features=features, fit_drift=fit_drift)
    store_predictors(db_url, device=device, backend=backend, reports=reports, noise_floors=noise_floors)
    return reports


def _no_predictor(device: str, backend: str, phase: str) -> UserError:
    return UserError(
        f"No latency predictor is stored for {phase} on {device} ({backend}); run hilnas latency calibrate first."
    )


def predict_ms(
    db_url: str, device: str, backend: str, arch: ArchConfig, workload: Workload
) -> dict[str, tuple[float, float | None]]:
    """Per phase: (predicted milliseconds, relative std or None) from the selected stored predictor.

    The std is that of log-latency (about the relative error), given by predictors that have one.
    """
    return {
        phase: predict_phase_ms(db_url, device, backend, phase, pd.DataFrame([phase_features(arch, workload, phase)]))
        for phase in PHASES
    }


def predict_phase_ms(
    db_url: str, device: str, backend: str, phase: str, features: pd.DataFrame
) -> tuple[float, float | None]:
    """(predicted milliseconds, relative std or None) of one phase for a one-row feature frame, from the
    selected stored predictor of that phase (any family's: the predictor knows which columns it reads)."""
    predictor = storage.load_selected(db_url, device, backend, phase)
    if predictor is None:
        raise _no_predictor(device, backend, phase)
    if predictor.has_uncertainty:
        mean, std = predictor.predict(features, return_std=True)
        return float(mean[0]), float(std[0])
    return float(predictor.predict(features)[0]), None


def stated_accuracy(db_url: str, device: str, backend: str, phase: str) -> dict[str, Any]:
    """What the selected predictor promised on its random held-out split, for comparison with real errors.

    Keys: ``predictor``, ``record_id``, ``n_measurements``, ``mape`` and ``p90_ape`` (%; ``p90_ape``
    is None for predictors stored before it was recorded), ``within_5``, ``within_10`` (shares),
    ``kendall_tau``, ``out_of_range_mape`` and ``noise_floor_mape`` (% or None).
    """
    record = storage.selected_record(db_url, device, backend, phase)
    if record is None:
        raise _no_predictor(device, backend, phase)
    metrics = record["metrics"]
    random_split = metrics["random"]
    noise = metrics.get("noise_floor")
    return {
        "predictor": record["name"],
        "record_id": record["id"],
        "n_measurements": record["n_measurements"],
        "mape": random_split["mape"],
        "p90_ape": random_split.get("p90_ape"),
        "within_5": random_split["within_5"],
        "within_10": random_split["within_10"],
        "kendall_tau": random_split["kendall_tau"],
        "out_of_range_mape": metrics["out_of_range"]["mape"],
        "noise_floor_mape": noise["mape"] if noise else None,
    }
