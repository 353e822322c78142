"""The latency benchmark's check of the drift correction: how much candidates slow when their reference does."""

import numpy as np

from benchmarks.latency_model import describe_shift, drift_elasticity
from latency_models.metrics import revisit_shift
from latency_models.protocol import DRIFT_CORRECTED


def timed(raw_ms: float, reference_ms: float) -> dict:
    return {"timing": DRIFT_CORRECTED, "raw_median_ms": raw_ms, "reference_ms": reference_ms}


def test_the_elasticity_is_the_slope_of_raw_time_on_reference_time():
    rng = np.random.default_rng(0)
    pairs = []
    for ms in rng.uniform(0.2, 2.0, 12):
        slowdown = rng.choice([1.0, 1.35])  # the reference's second measurement against its first
        pairs.append((timed(ms, 0.19), timed(ms * slowdown**0.6, 0.19 * slowdown)))
    slope, n = drift_elasticity(pairs)
    assert n == 12 and abs(slope - 0.6) < 1e-9


def test_no_elasticity_without_corrected_pairs_or_a_reference_that_moved():
    still = [(timed(1.0, 0.19), timed(1.1, 0.19))] * 5
    raw = [({"timing": "raw"}, {"timing": "raw"})] * 5
    assert drift_elasticity(still) is None and drift_elasticity(raw) is None


def test_second_visits_slower_as_a_whole_are_reported_as_a_drift_not_noise():
    rng = np.random.default_rng(1)
    first = rng.uniform(0.3, 1.5, 24)
    second = first * 1.12 * np.exp(rng.normal(0, 0.03, 24))
    shift = revisit_shift(first, second)
    assert 1.09 < shift["ratio"] < 1.15 and shift["low"] > 1 and shift["share_slower"] > 0.9
    assert "a drift of the run" in describe_shift("decode", shift)


def test_scatter_around_the_first_visit_is_no_systematic_change():
    rng = np.random.default_rng(2)
    first = rng.uniform(0.3, 1.5, 24)
    second = first * np.exp(rng.normal(0, 0.05, 24))
    shift = revisit_shift(first, second)
    assert shift["low"] < 1 < shift["high"]
    assert "no systematic change" in describe_shift("prefill", shift)
    assert revisit_shift(first[:2], second[:2]) is None
