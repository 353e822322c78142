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
  fitted jointly from end-to-end latencies (blocks are not timed in isolation).
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


def _columns(features: FeatureSet | None) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(additive, log, roofline kinds) of ``features``, MobileLLM's when None."""
    if features is None:
        return tuple(ADDITIVE_COLUMNS), tuple(LOG_COLUMNS), KINDS
    return features.additive, features.log, features.kinds


def _count_columns(features: FeatureSet | None) -> tuple[str, ...]:
    """The fixed-cost counts of ``features``, MobileLLM's (layers, attention sub-blocks) when None."""
    return tuple(COUNT_COLUMNS) if features is None else features.counts


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
        model = LinearRegression(positive=True, fit_intercept=self.intercept)
        self.model_ = model.fit(self._terms(X) / self.scale_, y, sample_weight=1.0 / y**2)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Read the columns it was fitted on, so that a predictor stored before the terms changed still works."""
        return np.maximum(self.model_.predict(X[self.scale_.index] / self.scale_), 1e-6)


class FlopsLayersPredictor(_PositiveLinear):
    name = "flops-layers"
    intercept = False  # a fixed cost per call is a per-layer cost here: one coefficient fewer to fit from four points

    def _terms(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[["flops", *_count_columns(self.features)]]


class LayerwisePredictor(_PositiveLinear):
    name = "layerwise"

    def _terms(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[list(_columns(self.features)[0])]

    def block_costs(self) -> dict[str, float]:
        """Milliseconds per unit of each additive term (per FLOP, per byte, per layer of a mode)."""
        return {col: float(c / s) for col, c, s in zip(self.scale_.index, self.model_.coef_, self.scale_, strict=True)}


class _CorrectedLayerwise(LatencyPredictor):
    """Layerwise model times exp(learned correction of its log error)."""

    has_uncertainty = True

    def _corrector(self) -> BaseEstimator:
        raise NotImplementedError

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _CorrectedLayerwise:
        y = np.asarray(y, float)
        self.base_ = LayerwisePredictor(self.features).fit(X, y)
        residual = np.log(y) - np.log(self.base_.predict(X))
        with warnings.catch_warnings():  # hyper-parameters at their bounds are expected on tiny samples
            warnings.simplefilter("ignore", ConvergenceWarning)
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
