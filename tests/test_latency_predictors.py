"""Latency predictors, metrics, calibration design and predictor storage, on data with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latency_models.calibration import (
    Candidate,
    calibrate,
    calibration_design,
    candidate_pool,
    evaluate_predictors,
    maximin_design,
)
from latency_models.features import phase_features
from latency_models.metrics import accuracy, noise_floor, out_of_range_split, random_split
from latency_models.predictors import (
    PREDICTORS,
    BoostedTreesPredictor,
    FlopsLayersPredictor,
    FlopsLinearPredictor,
    GaussianProcessPredictor,
    LayerwisePredictor,
    RooflinePredictor,
    select_by_cv,
)
from search.families.mobilellm_flash.space import default_space
from tests.latency_support import true_latency_ms


@pytest.fixture(scope="module")
def pool() -> list[Candidate]:
    return candidate_pool(default_space(), 80, seed=3)


def frame(pool: list[Candidate], phase: str) -> tuple[pd.DataFrame, np.ndarray]:
    rows = [phase_features(c.arch, c.workload, phase) for c in pool]
    return pd.DataFrame(rows), np.array([true_latency_ms(r) for r in rows])


def test_flops_layers_fits_a_per_layer_overhead_from_four_measurements(pool: list[Candidate]) -> None:
    # A small decode step: its FLOPs cost little next to a fixed cost per layer and per attention sub-block.
    X, _ = frame(pool, "decode")
    y = 2e-9 * X["flops"].to_numpy() + 0.05 * X["n_layers"].to_numpy() + 0.03 * X["n_attention"].to_numpy()
    few = np.argsort(X["flops"].to_numpy())[[0, 20, 50, -1]]
    rest = np.setdiff1d(np.arange(len(y)), few)
    overhead = FlopsLayersPredictor().fit(X.iloc[few], y[few]).predict(X.iloc[rest])
    flops_only = FlopsLinearPredictor().fit(X.iloc[few], y[few]).predict(X.iloc[rest])
    assert accuracy(y[rest], overhead)["mape"] < 1.0
    assert accuracy(y[rest], flops_only)["mape"] > 5.0


def test_accuracy_metrics_on_known_numbers() -> None:
    metrics = accuracy(np.array([100.0, 200.0, 400.0, 800.0]), np.array([104.0, 170.0, 400.0, 880.0]))
    assert metrics["mape"] == pytest.approx((4 + 15 + 0 + 10) / 4)
    assert metrics["rmspe"] == pytest.approx(np.sqrt((16 + 225 + 0 + 100) / 4))
    assert metrics["within_5"] == 0.5 and metrics["within_10"] == 0.75
    assert metrics["kendall_tau"] == pytest.approx(1.0)
    assert accuracy(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]))["kendall_tau"] == pytest.approx(-1.0)
    assert noise_floor(np.array([10.0, 20.0]), np.array([11.0, 20.0]))["mape"] == pytest.approx(5.0)


def test_splits() -> None:
    sizes = np.array([5, 1, 9, 3, 7, 2, 8, 4])
    train, test = out_of_range_split(sizes, 0.25)
    assert sizes[test].min() > sizes[train].max() and len(test) == 2
    train, test = random_split(10, 0.3, seed=0)
    assert len(test) == 3 and not set(train) & set(test) and len(train) + len(test) == 10


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_layerwise_recovers_an_additive_device(pool: list[Candidate], phase: str) -> None:
    X, y = frame(pool, phase)
    model = LayerwisePredictor().fit(X[:60], y[:60])
    assert accuracy(y[60:], model.predict(X[60:]))["mape"] < 1.0
    assert model.block_costs()["n_full"] == pytest.approx(0.01, rel=0.05)


def test_layerwise_prices_softmax_per_score_whatever_the_head_width(pool: list[Candidate]) -> None:
    # A device whose softmax costs a fixed time per score: with narrow heads it outweighs the score FLOPs.
    X, y = frame(pool, "prefill")
    y = y + 5e-5 * X["softmax_elems"].to_numpy()
    model = LayerwisePredictor().fit(X[:60], y[:60])
    assert accuracy(y[60:], model.predict(X[60:]))["mape"] < 1.0
    assert model.block_costs()["softmax_elems"] == pytest.approx(5e-5, rel=0.05)


def test_layerwise_finds_the_cache_knee_of_a_device_whose_large_steps_stream_from_memory(
    pool: list[Candidate],
) -> None:
    # Decode steps streaming more than 10 MiB pay 50 ms per further GB (main memory) on top of the additive
    # device's 62.5 ms per GB of FFN weights: the knee chosen by cross-validation is that one, at that price.
    X, y = frame(pool, "decode")
    knee = 10 * 2**20
    assert (X["streamed_bytes"] > knee).sum() >= 10 and (X["streamed_bytes"] < knee).sum() >= 10
    y = y + 5e-8 * np.maximum(0.0, X["streamed_bytes"].to_numpy() - knee)
    model = LayerwisePredictor().fit(X[:60], y[:60])
    assert model.cache_knee_mib_ == 10.0
    assert model.block_costs()["beyond_cache"] == pytest.approx(5e-8, rel=0.1)
    assert accuracy(y[60:], model.predict(X[60:]))["mape"] < 1.0
    additive_only = LayerwisePredictor(cache_knee_mib=None).fit(X[:60], y[:60])
    assert "beyond_cache" not in additive_only.block_costs()
    assert accuracy(y[60:], additive_only.predict(X[60:]))["mape"] > 3.0


def test_a_fitted_layerwise_model_reads_the_columns_it_was_fitted_on(
    pool: list[Candidate], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A predictor stored before the additive terms changed must still predict from a frame with the new ones.
    from latency_models import predictors

    X, y = frame(pool, "decode")
    fewer = [c for c in predictors.ADDITIVE_COLUMNS if c != "softmax_elems"]
    with monkeypatch.context() as patch:
        patch.setattr(predictors, "ADDITIVE_COLUMNS", fewer)
        old = LayerwisePredictor().fit(X[:60], y[:60])
        before = old.predict(X[60:])
    assert list(old.block_costs()) == fewer
    np.testing.assert_allclose(old.predict(X[60:]), before)


def test_roofline_is_the_analytic_bound() -> None:
    X = pd.DataFrame(
        [
            {
                f"{k}_{u}": 0.0
                for k in ("attn_proj", "attn_score_full", "attn_score_local", "ffn", "head", "norm")
                for u in ("flops", "bytes")
            }
            | {"ffn_flops": 2e9, "ffn_bytes": 1e9}
        ]
    )
    # 2 GFLOP at 10 GFLOP/s = 200 ms; 1 GB at 20 GB/s = 50 ms; the compute bound wins.
    assert RooflinePredictor(peak_gflops=10, bandwidth_gbs=20).fit(X, None).predict(X)[0] == pytest.approx(200.0)


def test_uncertainty_models_report_std_and_every_predictor_fits(pool: list[Candidate]) -> None:
    X, y = frame(pool, "decode")
    noisy = y * np.exp(np.random.default_rng(0).normal(0, 0.03, len(y)))
    for cls in (GaussianProcessPredictor, BoostedTreesPredictor):
        mean, std = cls().fit(X[:50], noisy[:50]).predict(X[50:], return_std=True)
        assert mean.shape == std.shape == (len(X) - 50,) and (std >= 0).all() and np.isfinite(mean).all()
        assert accuracy(y[50:], mean)["mape"] < 10
    for name, cls in PREDICTORS.items():
        predictor = cls() if name != "roofline" else cls(peak_gflops=50, bandwidth_gbs=20)
        assert predictor.fit(X, noisy).predict(X).shape == (len(X),)
    best, scores = select_by_cv(X, noisy)
    assert best in scores and scores[best] == min(scores.values())


def test_maximin_design_spreads_points() -> None:
    points = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [0.0, 10.0], [10.0, 0.0], [5.0, 5.0]])
    chosen = maximin_design(points, 4, seed=0)
    assert len(set(chosen)) == 4
    assert not {0, 1} <= set(chosen)  # near-duplicates are never both picked
    gaps = [np.linalg.norm(points[a] - points[b]) for a in chosen for b in chosen if a < b]
    assert min(gaps) > 7.0


def test_calibration_designs_then_follows_uncertainty(pool: list[Candidate]) -> None:
    measured: list[Candidate] = []

    def device(candidate: Candidate) -> dict[str, dict]:
        measured.append(candidate)
        if len(measured) == 3:
            raise RuntimeError("export failed at operator aten::foo")  # a failing candidate is skipped
        return {
            phase: {
                "arch_hash": candidate.arch.arch_hash(),
                "architecture": candidate.arch.model_dump(mode="json"),
                "phase": phase,
                "shape": {
                    "prefill_len": candidate.workload.prefill_len,
                    "decode_kv_len": candidate.workload.decode_kv_len,
                },
                "median_ms": true_latency_ms(phase_features(candidate.arch, candidate.workload, phase)),
            }
            for phase in ("prefill", "decode")
        }

    result = calibrate(pool, device, budget=16, n_initial=10, seed=0)
    assert len(measured) == 16 and len({c.key for c in measured}) == 16
    # The design is known before calibration starts, so that its exports can run side by side.
    assert [pool[i].key for i in calibration_design(pool, 16, 10, seed=0)] == [c.key for c in measured[:10]]
    assert len(result.measured) == 15 and len(result.failures) == 1 and "aten::foo" in result.failures[0]
    decode_rows = [r for r in result.rows if r["phase"] == "decode"]
    reports = evaluate_predictors(decode_rows, {"peak_gflops": 20.0, "bandwidth_gbs": 10.0})
    assert {r.name for r in reports} == set(PREDICTORS) and sum(r.selected for r in reports) == 1
    layerwise = next(r for r in reports if r.name == "layerwise")
    assert layerwise.metrics["random"]["mape"] < 5 and "out_of_range" in layerwise.metrics
    # Every calibration row is predicted once out of fold; the largest ones again in the out-of-range split.
    splits = [p["split"] for p in layerwise.held_out]
    assert splits.count("random") == len(decode_rows) and 1 <= splits.count("out_of_range") < len(decode_rows)


def test_predictors_round_trip_through_sql(db_url: str, pool: list[Candidate]) -> None:
    from latency_models import storage

    X, y = frame(pool, "prefill")
    model = LayerwisePredictor().fit(X, y)
    metrics = {"random": accuracy(y, model.predict(X))}
    storage.save_predictor(
        db_url,
        device="cpu",
        backend="executorch-xnnpack",
        phase="prefill",
        predictor=model,
        n_measurements=len(y),
        metrics=metrics,
        cv_mape=1.0,
        selected=True,
    )
    storage.save_profile(db_url, "cpu", 1, {"peak_gflops": 30.0, "bandwidth_gbs": 9.0}, {"cpu": "test"})
    loaded = storage.load_selected(db_url, "cpu", "executorch-xnnpack", "prefill")
    assert loaded is not None and np.allclose(loaded.predict(X), model.predict(X))
    assert storage.load_selected(db_url, "cpu", "executorch-xnnpack", "decode") is None
    assert storage.latest_profile(db_url, "cpu") == {"peak_gflops": 30.0, "bandwidth_gbs": 9.0}
    [record] = storage.list_predictors(db_url)
    assert record["name"] == "layerwise" and record["metrics"]["random"]["n"] == len(y)
