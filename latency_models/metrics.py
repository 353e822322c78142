"""Accuracy of latency predictions, the device's noise floor, how well drift correction fits the device, and the
splits they are computed on."""

from __future__ import annotations

import numpy as np
from scipy import stats


def accuracy(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAPE and RMSPE (%), the 90th percentile of the absolute error (%), share within +-5% / +-10%,
    and Kendall's tau of the ranking."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    if len(measured) == 0:
        raise ValueError("no measurements to score")
    relative = (predicted - measured) / measured
    tau = stats.kendalltau(measured, predicted).statistic if len(measured) > 1 else float("nan")
    return {
        "mape": float(np.mean(np.abs(relative)) * 100),
        "rmspe": float(np.sqrt(np.mean(relative**2)) * 100),
        "p90_ape": float(np.percentile(np.abs(relative), 90) * 100),
        "within_5": float(np.mean(np.abs(relative) <= 0.05)),
        "within_10": float(np.mean(np.abs(relative) <= 0.10)),
        "kendall_tau": float(tau),
        "n": float(len(measured)),
    }


def noise_floor(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """The error of predicting a measurement by re-measuring the same architecture.

    No predictor can be expected to beat this: it is the device's own run-to-run disagreement.
    """
    return accuracy(np.asarray(first, float), np.asarray(second, float))


def revisit_shift(first: np.ndarray, second: np.ndarray) -> dict[str, float] | None:
    """Whether re-measurements came out systematically slower or faster than the first measurements: the geometric
    mean of second / first with its 95% confidence interval (Student t on the log ratios) and the share of pairs
    that came out slower. The noise floor mixes this shift with scatter; a shift whose interval leaves 1 is a
    drift of the device between the visits that the correction did not follow, not noise. None under 3 pairs."""
    ratios = np.log(np.asarray(second, float) / np.asarray(first, float))
    if len(ratios) < 3:
        return None
    half = stats.t.ppf(0.975, len(ratios) - 1) * ratios.std(ddof=1) / np.sqrt(len(ratios))
    mean = ratios.mean()
    return {
        "ratio": float(np.exp(mean)),
        "low": float(np.exp(mean - half)),
        "high": float(np.exp(mean + half)),
        "share_slower": float(np.mean(ratios > 0)),
        "n": float(len(ratios)),
    }


#: Below this spread of log reference time the reference barely moved, and a slope on it would fit noise.
MIN_REFERENCE_SPREAD = 0.05


def elasticity(candidate_ms: np.ndarray, reference_ms: np.ndarray) -> float | None:
    """How much a program slows when its drift reference does: the least-squares slope of log candidate time on
    log reference time, over moments (or ratios between two moments) timed together. Dividing by the reference
    corrects exactly when it is 1 and over-corrects below 1. None with fewer than three points or a reference
    whose log time spread less than ``MIN_REFERENCE_SPREAD``."""
    reference = np.log(np.asarray(reference_ms, float))
    if len(reference) < 3 or np.ptp(reference) < MIN_REFERENCE_SPREAD:
        return None
    return float(np.polyfit(reference, np.log(np.asarray(candidate_ms, float)), 1)[0])


def random_split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (train, test) indices."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def out_of_range_split(size: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices where every test architecture is larger than every training one."""
    size = np.asarray(size, float)
    threshold = np.quantile(size, 1.0 - test_fraction)
    test = np.flatnonzero(size >= threshold)
    train = np.flatnonzero(size < threshold)
    return train, test
