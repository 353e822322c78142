"""Latency predictors as scikit-learn estimators: ``fit(X, y)`` / ``predict(X)`` on ``features.py`` frames.

From simplest to richest:

- ``roofline``: analytical, no fitting; each kind of work takes max(FLOPs / peak, bytes / bandwidth)
  at the device's measured peak compute and memory bandwidth.
- ``flops-linear``: latency = a * FLOPs + b.
- ``flops-layers``: latency = a * FLOPs plus a fixed cost per layer and per attention sub-block (a
  family's ``counts``: kernel launches, norms, the runtime's per-operator work), which dominate small
  decode steps. Three coefficients and no intercept, so four calibration measurements can fit it.
- ``layerwise``: nn-Meter-style additive model: every layer's latency is a non-negative linear
  function of its own work (projection, attention-score, FFN FLOPs, KV bytes, a per-layer cost by
  attention mode) and the model's latency is their sum plus the head. The block coefficients are
  fitted jointly from end-to-end latencies (blocks are not timed in isolation). One term is not
  additive: the bytes a call streams beyond a cache knee (chosen by cross-validation), which come from
  main memory instead of the caches.
- ``boosted-trees`` and ``gaussian-process``: the layerwise model corrected by a learned model of
  its log-ratio error on log features; both report an uncertainty (spread of a bagged ensemble,
  GP posterior std), which calibration uses to choose what to measure next. Far outside the
  training range the correction fades and the additive model extrapolates.

All fits minimise relative error (latencies span orders of magnitude).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import BaggingRegressor, GradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from latency_models.features import KINDS
from latency_models.metrics import accuracy

#: Per-layer work terms of the additive model. Norm work tracks the projections closely, so it is left out
#: (fewer coefficients matter with a few dozen calibration measurements). Softmax work does not track the
#: score FLOPs: per score it is the same whatever the head width, so with narrow heads it dominates. Adding it
#: cut the layerwise model's cross-validated prefill MAPE from 9.4% to 5.6% on 40 ExecuTorch measurements.
ADDITIVE_COLUMNS = [
    "attn_proj_flops",
    "attn_score_full_flops",
    "attn_score_local_flops",
    "softmax_elems",
    "ffn_flops",
    "head_flops",
    "kv_bytes",
    "n_full",
    "n_local",
    "n_skip",
]
COUNT_COLUMNS = ["n_layers", "n_attention"]
LOG_COLUMNS = [
    "flops",
    "bytes",
    "attn_proj_flops",
    "attn_score_full_flops",
    "attn_score_local_flops",
    "ffn_flops",
    "kv_bytes",
    "n_layers",
    "n_attention",
    "dim",
    "tokens",
]


#: Cache knees (MiB) the layerwise model chooses from by cross-validation. On the shared 2-core EPYC
#: host (1 MiB L2 per core, 32 MiB L3 shared with other tenants) decode steps streaming more than 12 MB
#: ran a median 23% slower than the additive model predicted; a hinge at 10 MiB took the layerwise
#: model's cross-validated decode MAPE from 11.0% to 7.1% on one benchmark run's calibration rows.
CACHE_KNEES_MIB = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0)
#: Fewer training rows than this leave the cache knee out: an extra term is not worth fitting on them.
MIN_ROWS_FOR_KNEE = 12
#: A knee is taken only when it cuts the cross-validated MAPE by at least this share and this many points:
#: choosing among ten knees finds a slightly better score on rows without one too (prefill's on this host:
#: 4.73% to 4.68%; decode's: 10.8-11.0% to 6.2-7.1%).
KNEE_MIN_GAIN = 0.05
KNEE_MIN_GAIN_POINTS = 0.1


@dataclass(frozen=True)
class FeatureSet:
    """What a family's architectures look like to the predictors: how measurement rows become a feature
    frame, and which of its columns each predictor reads.

    MobileLLM's (``features.py``) is the default everywhere; another family (EdgeTAM) passes its own
    to calibration and fitting, and the fitted predictors keep it, so predicting needs nothing else.
    ``frame`` must give a ``flops`` column (the FLOPs-linear model), a ``params`` column (the
    out-of-range split) and ``<kind>_flops`` / ``<kind>_bytes`` for every roofline ``kind``.
    """

    frame: Callable[[list[dict[str, Any]]], pd.DataFrame]
    additive: tuple[str, ...]
    log: tuple[str, ...]
    kinds: tuple[str, ...]
    counts: tuple[str, ...] = ()  # units of work with a fixed cost each (layers, operators): flops-layers' terms
    footprint: str | None = None  # bytes one call streams, for the layerwise cache knee (None: no knee)


def _columns(features: FeatureSet | None) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(additive, log, roofline kinds) of ``features``, MobileLLM's when None."""
    if features is None:
        return tuple(ADDITIVE_COLUMNS), tuple(LOG_COLUMNS), KINDS
    return features.additive, features.log, features.kinds


def _count_columns(features: FeatureSet | None) -> tuple[str, ...]:
    """The fixed-cost counts of ``features``, MobileLLM's (layers, attention sub-blocks) when None."""
    return tuple(COUNT_COLUMNS) if features is None else features.counts


def _footprint_column(features: FeatureSet | None) -> str | None:
    """The streamed-bytes column of ``features`` (MobileLLM's when None)."""
    return "streamed_bytes" if features is None else features.footprint


def _log_features(X: pd.DataFrame, features: FeatureSet | None) -> np.ndarray:
    return np.log1p(X[list(_columns(features)[1])].to_numpy(float))


class LatencyPredictor(BaseEstimator, RegressorMixin):
    """Base: predicts milliseconds; ``has_uncertainty`` predictors accept ``return_std=True``.

    The returned std is relative (a std of log-latency), since errors scale with latency.
    """

    name: ClassVar[str]
    has_uncertainty: ClassVar[bool] = False
    #: The columns read (None: MobileLLM's); a class default so that predictors pickled before it existed load.
    features: FeatureSet | None = None

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LatencyPredictor:
        raise NotImplementedError

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError


class RooflinePredictor(LatencyPredictor):
    name = "roofline"

    def __init__(
        self, peak_gflops: float = 10.0, bandwidth_gbs: float = 10.0, features: FeatureSet | None = None
    ) -> None:
        self.peak_gflops = peak_gflops
        self.bandwidth_gbs = bandwidth_gbs
        self.features = features

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> RooflinePredictor:
        """Nothing to learn: the bound comes from the device's measured peaks."""
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        seconds = sum(
            np.maximum(X[f"{kind}_flops"] / (self.peak_gflops * 1e9), X[f"{kind}_bytes"] / (self.bandwidth_gbs * 1e9))
            for kind in _columns(self.features)[2]
        )
        return np.asarray(seconds, float) * 1000.0


class FlopsLinearPredictor(LatencyPredictor):
    name = "flops-linear"

    def __init__(self, features: FeatureSet | None = None) -> None:
        self.features = features

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> FlopsLinearPredictor:
        y = np.asarray(y, float)
        self.model_ = LinearRegression(positive=True).fit(X[["flops"]], y, sample_weight=1.0 / y**2)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict(X[["flops"]])


def _relative_fit(terms: pd.DataFrame | np.ndarray, y: np.ndarray, intercept: bool = True) -> LinearRegression:
    """Non-negative least squares on relative error (each row weighted by 1 / latency squared)."""
    return LinearRegression(positive=True, fit_intercept=intercept).fit(terms, y, sample_weight=1.0 / y**2)


class _PositiveLinear(LatencyPredictor):
    """Latency as a non-negative combination of some feature columns (``_terms``), fitted for relative error."""

    intercept: ClassVar[bool] = True

    def __init__(self, features: FeatureSet | None = None) -> None:
        self.features = features

    def _terms(self, X: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _PositiveLinear:
        y = np.asarray(y, float)
        self.scale_ = self._terms(X).abs().max().replace(0, 1.0)
        self.model_ = _relative_fit(self._terms(X) / self.scale_, y, self.intercept)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Read the columns it was fitted on, so that a predictor stored before the terms changed still works."""
        return np.maximum(self.model_.predict(self._terms(X)[self.scale_.index] / self.scale_), 1e-6)


class FlopsLayersPredictor(_PositiveLinear):
    name = "flops-layers"
    intercept = False  # a fixed cost per call is a per-layer cost here: one coefficient fewer to fit from four points

    def _terms(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[["flops", *_count_columns(self.features)]]


class LayerwisePredictor(_PositiveLinear):
    """The additive model plus ``beyond_cache``: the streamed bytes over the cache knee, at their own cost.

    ``cache_knee_mib`` "cv" chooses the knee from ``CACHE_KNEES_MIB`` (or none) by cross-validated MAPE on
    the training rows; a number fixes it; None leaves the term out.
    """

    name = "layerwise"
    cache_knee_: float | None = None  # bytes; a class default so that predictors pickled before it load

    def __init__(self, features: FeatureSet | None = None, cache_knee_mib: float | str | None = "cv") -> None:
        self.features = features
        self.cache_knee_mib = cache_knee_mib

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LayerwisePredictor:
        self.cache_knee_ = self._knee(X, np.asarray(y, float))
        return super().fit(X, y)

    def _knee(self, X: pd.DataFrame, y: np.ndarray) -> float | None:
        column = _footprint_column(self.features)
        if column is None or self.cache_knee_mib is None:
            return None
        if self.cache_knee_mib != "cv":
            return float(self.cache_knee_mib) * 2**20
        if len(y) < MIN_ROWS_FOR_KNEE:
            return None
        # Knees outside the rows' span add nothing a bytes term does not (below) or nothing at all (above).
        footprint = X[column].to_numpy(float)
        knees = [k * 2**20 for k in CACHE_KNEES_MIB if footprint.min() < k * 2**20 < footprint.max()]
        if not knees:
            return None
        additive = X[list(_columns(self.features)[0])].to_numpy(float)
        folds = list(KFold(5, shuffle=True, random_state=0).split(additive))  # as out_of_fold's

        def cv_mape(knee: float | None) -> float:
            """``cross_validated_mape`` on plain arrays: it runs once per knee in every fit, and the pandas frames
            and estimator clones of the general one cost ten times the fits themselves (0.65 s against 0.06-0.15 s)."""
            terms = additive if knee is None else np.column_stack([additive, np.maximum(0.0, footprint - knee)])
            scale = np.abs(terms).max(axis=0)
            terms = terms / np.where(scale > 0, scale, 1.0)
            predicted = np.empty_like(y)
            for train, test in folds:
                predicted[test] = _relative_fit(terms[train], y[train]).predict(terms[test])
            return accuracy(y, np.maximum(predicted, 1e-6))["mape"]

        scores = [cv_mape(knee) for knee in knees]
        without = cv_mape(None)
        best = int(np.argmin(scores))
        needed = max(KNEE_MIN_GAIN * without, KNEE_MIN_GAIN_POINTS)
        return knees[best] if scores[best] <= without - needed else None

    def _terms(self, X: pd.DataFrame) -> pd.DataFrame:
        terms = X[list(_columns(self.features)[0])]
        if self.cache_knee_ is None:
            return terms
        return terms.assign(beyond_cache=np.maximum(0.0, X[_footprint_column(self.features)] - self.cache_knee_))

    @property
    def cache_knee_mib_(self) -> float | None:
        """The fitted knee in MiB (None: no cache term)."""
        return None if self.cache_knee_ is None else self.cache_knee_ / 2**20

    def block_costs(self) -> dict[str, float]:
        """Milliseconds per unit of each additive term (per FLOP, per byte, per layer of a mode)."""
        return {col: float(c / s) for col, c, s in zip(self.scale_.index, self.model_.coef_, self.scale_, strict=True)}


def cache_knee(predictor: LatencyPredictor) -> dict[str, float] | None:
    """The cache knee a fitted predictor's layerwise model (itself or the one it corrects) took: ``mib`` and
    ``ms_per_mib``, what each MiB streamed beyond it costs on top of the additive terms; None without one."""
    layerwise = getattr(predictor, "base_", predictor)
    if not isinstance(layerwise, LayerwisePredictor) or layerwise.cache_knee_ is None:
        return None
    return {"mib": layerwise.cache_knee_mib_, "ms_per_mib": layerwise.block_costs()["beyond_cache"] * 2**20}


def describe_cache_knee(phase: str, knee: dict[str, float] | None) -> str:
    """One sentence on a phase's cache knee (``cache_knee``, as stored)."""
    if knee is None:
        return (
            f"{phase}: no cache knee: streamed bytes cost the same at every size (no knee beat none by "
            f"cross-validation, fewer than {MIN_ROWS_FOR_KNEE} rows to try one, or a family without a "
            "streamed-bytes feature)."
        )
    return (
        f"{phase}: cache knee {knee['mib']:g} MiB (chosen by cross-validation): each MiB a call streams beyond it "
        f"costs {knee['ms_per_mib']:.4f} ms on top of the additive terms."
    )


class _CorrectedLayerwise(LatencyPredictor):
    """Layerwise model times exp(learned correction of its log error)."""

    has_uncertainty = True

    def _corrector(self) -> BaseEstimator:
        raise NotImplementedError

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _CorrectedLayerwise:
        y = np.asarray(y, float)
        self.base_ = LayerwisePredictor(self.features).fit(X, y)
        residual = np.log(y) - np.log(self.base_.predict(X))
        # The corrector's hyper-parameters are fixed here; sklearn re-validating them for each of the 1200 trees
        # of a boosted-trees fit (8 bags of 150) took about 30% of the predictors' fitting time.
        with warnings.catch_warnings(), sklearn.config_context(skip_parameter_validation=True):
            warnings.simplefilter("ignore", ConvergenceWarning)  # GP hyper-parameters at their bounds on tiny samples
            self.corrector_ = self._corrector().fit(_log_features(X, self.features), residual)
        return self

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        mean, std = self._correction(_log_features(X, self.features))
        prediction = self.base_.predict(X) * np.exp(mean)
        return (prediction, std) if return_std else prediction

    def _correction(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class BoostedTreesPredictor(_CorrectedLayerwise):
    name = "boosted-trees"

    def __init__(
        self,
        n_bags: int = 8,
        max_depth: int = 3,
        n_estimators: int = 150,
        random_state: int = 0,
        features: FeatureSet | None = None,
    ) -> None:
        self.n_bags = n_bags
        self.max_depth = max_depth
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.features = features

    def _corrector(self) -> BaseEstimator:
        trees = GradientBoostingRegressor(max_depth=self.max_depth, n_estimators=self.n_estimators, learning_rate=0.05)
        return BaggingRegressor(trees, n_estimators=self.n_bags, random_state=self.random_state)

    def _correction(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        each = np.stack([tree.predict(features) for tree in self.corrector_.estimators_])
        return each.mean(axis=0), each.std(axis=0)


class GaussianProcessPredictor(_CorrectedLayerwise):
    name = "gaussian-process"

    def __init__(self, random_state: int = 0, features: FeatureSet | None = None) -> None:
        self.random_state = random_state
        self.features = features

    def _corrector(self) -> BaseEstimator:
        n_log = len(_columns(self.features)[1])
        kernel = ConstantKernel(0.01, (1e-5, 1.0)) * RBF(np.ones(n_log), (1e-2, 1e3)) + WhiteKernel(1e-3, (1e-6, 1e-1))
        process = GaussianProcessRegressor(kernel, random_state=self.random_state)
        return make_pipeline(StandardScaler(), process)

    def _correction(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scaler, process = self.corrector_[0], self.corrector_[-1]
        mean, std = process.predict(scaler.transform(features), return_std=True)
        return mean, std


PREDICTORS: dict[str, type[LatencyPredictor]] = {
    cls.name: cls
    for cls in (
        RooflinePredictor,
        FlopsLinearPredictor,
        FlopsLayersPredictor,
        LayerwisePredictor,
        BoostedTreesPredictor,
        GaussianProcessPredictor,
    )
}
LEARNED = ("flops-linear", "flops-layers", "layerwise", "boosted-trees", "gaussian-process")


def out_of_fold(predictor: LatencyPredictor, X: pd.DataFrame, y: np.ndarray, folds: int = 5) -> np.ndarray:
    """Each row predicted by a copy of ``predictor`` fitted on the other folds (shuffled, seeded k-fold)."""
    folds = max(2, min(folds, len(y)))
    return cross_val_predict(clone(predictor), X, y, cv=KFold(folds, shuffle=True, random_state=0))


def cross_validated_mape(predictor: LatencyPredictor, X: pd.DataFrame, y: np.ndarray, folds: int = 5) -> float:
    """Mean absolute percentage error of out-of-fold predictions."""
    return accuracy(y, out_of_fold(predictor, X, y, folds))["mape"]


def select_by_cv(X: pd.DataFrame, y: np.ndarray, names: tuple[str, ...] = LEARNED) -> tuple[str, dict[str, float]]:
    """The learned predictor with the lowest cross-validated MAPE, and every candidate's score."""
    scores = {name: cross_validated_mape(PREDICTORS[name](), X, y) for name in names}
    return min(scores, key=scores.__getitem__), scores
