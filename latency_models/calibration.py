"""Choosing what to measure, and fitting and scoring every predictor on what was measured.

Calibration starts with a space-filling design over a pool of random valid candidates (greedy
maximin in standardised log-feature space), then repeatedly measures the candidate whose
latency the Gaussian-process predictor is least sure about, summed over prefill and decode
(or over another family's phases, with that family's ``FeatureSet``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.base import clone

from latency_models.drift_exponent import NOT_FITTED, ExponentFit, fit_exponent, rows_at_exponent
from latency_models.features import phase_features
from latency_models.measure import PHASES
from latency_models.metrics import accuracy, out_of_range_split
from latency_models.predictors import (
    LEARNED,
    LOG_COLUMNS,
    PREDICTORS,
    FeatureSet,
    GaussianProcessPredictor,
    LatencyPredictor,
    RooflinePredictor,
    out_of_fold,
)
from search.families.mobilellm_flash.space import ArchConfig, SpaceOptions, Workload, candidate_from_params
from search.family import InvalidCandidate
from search.space import SearchSpace


@dataclass(frozen=True)
class Candidate:
    params: dict[str, Any]
    arch: ArchConfig
    workload: Workload

    @property
    def key(self) -> tuple[str, int, int]:
        return self.arch.arch_hash(), self.workload.prefill_len, self.workload.decode_kv_len


def candidate_pool(space: SearchSpace, n: int, seed: int, options: SpaceOptions | None = None) -> list[Candidate]:
    """``n`` distinct valid candidates drawn at random from ``space`` (invalid draws are skipped)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    pool: dict[tuple, Candidate] = {}
    for _ in range(n * 20):
        if len(pool) >= n:
            break
        params = space.sample(study.ask())
        try:
            arch, workload = candidate_from_params(params, options)
        except InvalidCandidate:
            continue
        candidate = Candidate(params, arch, workload)
        pool.setdefault(candidate.key, candidate)
    return list(pool.values())


def pool_frames(candidates: list[Candidate]) -> dict[str, pd.DataFrame]:
    """Per phase, the MobileLLM feature frame of every candidate (one row per candidate, in pool order)."""
    return {p: pd.DataFrame([phase_features(c.arch, c.workload, p) for c in candidates]) for p in PHASES}


def design_matrix(
    candidates: list[Candidate] | None = None,
    *,
    frames: dict[str, pd.DataFrame] | None = None,
    features: FeatureSet | None = None,
) -> np.ndarray:
    """Standardised log features of every phase, one row per candidate (from ``frames`` when given)."""
    frames = frames if frames is not None else pool_frames(candidates or [])
    log_columns = list(features.log if features is not None else LOG_COLUMNS)
    matrix = np.concatenate([np.log1p(frame[log_columns].to_numpy(float)) for frame in frames.values()], axis=1)
    spread = matrix.std(axis=0)
    return (matrix - matrix.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def maximin_design(points: np.ndarray, k: int, seed: int) -> list[int]:
    """Greedy farthest-point selection of ``k`` rows (scipy.stats.qmc designs continuous boxes,
    but the candidates here are a discrete pool of valid architectures)."""
    chosen = [int(np.random.default_rng(seed).integers(len(points)))]
    distance = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < min(k, len(points)):
        nxt = int(distance.argmax())
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(points - points[nxt], axis=1))
    return chosen


#: The uncertainty step fits a Gaussian process per phase, which needs this many rows; until then it would only
#: take the next candidate in pool order, so a design should be at least this large.
MIN_GP_ROWS = 3

MeasureFn = Callable[[Candidate], dict[str, dict[str, Any]]]


@dataclass
class CalibrationResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    measured: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def calibration_design(
    pool: list[Any],
    budget: int,
    n_initial: int,
    seed: int = 0,
    *,
    frames: dict[str, pd.DataFrame] | None = None,
    features: FeatureSet | None = None,
) -> list[int]:
    """The indices of ``pool`` that ``calibrate`` measures first, in order (so that their exports can start
    before it does): a maximin design of ``min(n_initial, budget)`` candidates."""
    frames = frames if frames is not None else pool_frames(pool)
    return maximin_design(design_matrix(frames=frames, features=features), min(n_initial, budget), seed)


def calibrate(
    pool: list[Candidate],
    measure: MeasureFn,
    budget: int,
    n_initial: int,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
    *,
    frames: dict[str, pd.DataFrame] | None = None,
    features: FeatureSet | None = None,
    label: Callable[[Any], str] | None = None,
) -> CalibrationResult:
    """Measure up to ``budget`` candidates of ``pool``: a maximin design first, then by uncertainty.

    ``measure`` returns one stable row per phase or raises; a candidate that fails is noted and
    skipped (it still counts against the budget, since the device time was spent). Another family's
    pool (any objects) comes with its per-phase feature ``frames`` (one row per candidate, in pool
    order), its ``features`` and a ``label`` naming a candidate in failure notes.
    """
    frames = frames if frames is not None else pool_frames(pool)
    label = label or (lambda candidate: candidate.arch.arch_hash()[:12])
    result = CalibrationResult()
    tried: set[int] = set()
    queue = calibration_design(pool, budget, n_initial, seed, frames=frames, features=features)
    while len(tried) < min(budget, len(pool)):
        index = queue.pop(0) if queue else _most_uncertain(frames, tried, result.rows, features)
        tried.add(index)
        try:
            rows = measure(pool[index])
        except Exception as exc:  # an export failure or unstable device: skip this candidate, keep going
            result.failures.append(f"{label(pool[index])}: {type(exc).__name__}: {exc}")
        else:
            result.rows.extend(rows.values())
            result.measured.append(index)
        if on_step is not None:
            on_step(len(tried), budget)
    return result


def _most_uncertain(
    frames: dict[str, pd.DataFrame], tried: set[int], rows: list[dict[str, Any]], features: FeatureSet | None
) -> int:
    """The untried candidate with the largest predicted relative std, summed over phases."""
    remaining = [i for i in range(len(next(iter(frames.values())))) if i not in tried]
    total = np.zeros(len(remaining))
    for phase, frame in frames.items():
        phase_rows = [r for r in rows if r["phase"] == phase]
        if len(phase_rows) < MIN_GP_ROWS:
            return remaining[0]
        model = GaussianProcessPredictor(features=features).fit(*training_data(phase_rows, features))
        total += model.predict(frame.iloc[remaining], return_std=True)[1]
    return remaining[int(total.argmax())]


def training_data(rows: list[dict[str, Any]], features: FeatureSet | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Features (MobileLLM's unless ``features`` is given) and median latencies of measurement rows (one phase)."""
    from latency_models.features import feature_frame

    frame = features.frame(rows) if features is not None else feature_frame(rows)
    return frame, np.array([r["median_ms"] for r in rows], float)


def make_predictor(name: str, peaks: dict[str, float] | None, features: FeatureSet | None = None) -> LatencyPredictor:
    if name == RooflinePredictor.name:
        if peaks is None:
            raise ValueError("the roofline predictor needs the device's measured peaks")
        return RooflinePredictor(**peaks, features=features)
    return PREDICTORS[name](features=features)


@dataclass
class PredictorReport:
    """One fitted predictor of one phase (fitted on ``n_train`` rows): its metrics and every held-out
    prediction behind them.

    ``held_out`` holds one dict per scored point (``arch_hash``, ``shape``, ``split`` "random" or
    "out_of_range", ``measured_ms``, ``predicted_ms``): parity plots and error histograms are
    drawn from it, and the verification stage compares its real errors to these. Every latency behind
    them, trained on or scored, is at ``drift.exponent`` (``drift_exponent``).
    """

    name: str
    predictor: LatencyPredictor
    selected: bool
    cv_mape: float | None
    metrics: dict[str, dict[str, float]]
    n_train: int
    held_out: list[dict[str, Any]] = field(default_factory=list)
    drift: ExponentFit = NOT_FITTED


def _scored(
    split: str, rows: list[dict[str, Any]], measured: np.ndarray, predicted: np.ndarray
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The split's accuracy metrics and its per-point predictions."""
    points = [
        {
            "arch_hash": row["arch_hash"],
            "shape": row["shape"],
            "split": split,
            "measured_ms": float(m),
            "predicted_ms": float(p),
        }
        for row, m, p in zip(rows, measured, predicted, strict=True)
    ]
    return accuracy(measured, predicted), points


def evaluate_predictors(
    train: list[dict[str, Any]],
    peaks: dict[str, float] | None,
    held_out: list[dict[str, Any]] | None = None,
    out_of_range: list[dict[str, Any]] | None = None,
    oor_fraction: float = 0.25,
    features: FeatureSet | None = None,
    fit_drift: bool = True,
) -> list[PredictorReport]:
    """Fit every predictor on ``train`` (one phase) and score it on a random and an out-of-range split.

    5-fold cross-validation on ``train`` chooses among the learned predictors. Without explicit
    held-out rows the random split is that same cross-validation (every row predicted once, by
    the model fitted on the other folds); without explicit out-of-range rows the largest
    ``oor_fraction`` of ``train`` (by parameter count) is held out and the rest trained on.
    The roofline is left out when ``peaks`` is None (it has nothing to compute with). ``features``:
    another family's (default MobileLLM's). With ``fit_drift``, the drift correction's exponent is first
    fitted on ``train`` alone (``drift_exponent.fit_exponent``) and every row, trained on or scored, is
    converted to it; without, rows keep the exponent they were timed with.
    """
    drift = NOT_FITTED
    if fit_drift:
        drift = fit_exponent(train, features)
        train, held_out, out_of_range = (
            rows_at_exponent(rows, drift.exponent) for rows in (train, held_out, out_of_range)
        )
    X, y = training_data(train, features)
    fitted: list[tuple[str, LatencyPredictor, np.ndarray]] = []
    for name in PREDICTORS:
        if name == RooflinePredictor.name and peaks is None:
            continue  # no measured ceilings, no roofline
        predictor = make_predictor(name, peaks, features)
        fitted.append((name, clone(predictor).fit(X, y), out_of_fold(predictor, X, y)))
    cv_mape = {name: accuracy(y, predicted)["mape"] for name, _, predicted in fitted if name in LEARNED}
    selected = min(cv_mape, key=cv_mape.__getitem__)
    reports = []
    for name, predictor, cross_validated in fitted:
        if held_out:
            hx, hy = training_data(held_out, features)
            random_split = _scored("random", held_out, hy, predictor.predict(hx))
        else:
            random_split = _scored("random", train, y, cross_validated)
        if out_of_range:
            ox, oy = training_data(out_of_range, features)
            range_split = _scored("out_of_range", out_of_range, oy, predictor.predict(ox))
        else:
            fit_idx, test_idx = out_of_range_split(X["params"].to_numpy(), oor_fraction)
            small = clone(predictor).fit(X.iloc[fit_idx], y[fit_idx])
            larger = [train[i] for i in test_idx]
            range_split = _scored("out_of_range", larger, y[test_idx], small.predict(X.iloc[test_idx]))
        reports.append(
            PredictorReport(
                name,
                predictor,
                name == selected,
                cv_mape.get(name),
                {"random": random_split[0], "out_of_range": range_split[0]},
                len(train),
                random_split[1] + range_split[1],
                drift,
            )
        )
    return reports
