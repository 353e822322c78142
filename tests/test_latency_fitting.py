"""The shared fitting service: fit, store with per-point held-out predictions, predict, stated accuracy;
and a whole device calibration through the device's Ray actor (peaks measured there)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hilnas.errors import UserError
from latency_models import cache, storage
from latency_models.calibration import candidate_pool
from latency_models.features import phase_features
from latency_models.fitting import fit_and_store, predict_ms, stated_accuracy
from latency_models.measure import PHASES
from latency_models.metrics import accuracy
from latency_models.predictors import PREDICTORS
from search.families.mobilellm_flash.space import SpaceOptions, default_space
from search.space import CategoricalParam, IntParam, SearchSpace
from tests.latency_support import BACKEND, DEVICE, PEAKS, simulated_rows, true_latency_ms


def test_fit_and_store_keeps_held_out_points_and_predicts_with_the_selected_one(db_url: str) -> None:
    n_archs = 10
    rows = simulated_rows(n_archs, seed=1)
    unstable = {**rows[0], "arch_hash": "unstable", "median_ms": 1e6, "stable": False}
    cache.save(db_url, [*rows, unstable])
    floors = {"prefill": accuracy(np.array([1.0, 2.0]), np.array([1.01, 2.0])), "decode": None}

    storage.save_profile(db_url, DEVICE, 1, PEAKS, {"cpu": "simulated"})

    # No peaks given: the roofline takes the device's stored profile.
    reports = fit_and_store(db_url, device=DEVICE, backend=BACKEND, peaks=None, noise_floors=floors)

    assert set(reports) == set(PHASES)
    records = storage.list_predictors(db_url, DEVICE)
    assert len(records) == len(PHASES) * len(PREDICTORS)
    assert all(r["n_measurements"] == n_archs for r in records)  # the unstable row is never used
    assert [r["metrics"]["noise_floor"] for r in records if r["phase"] == "decode"] == [None] * len(PREDICTORS)
    # Rows timed without a drift reference: no exponent to fit, and the device keeps dividing.
    assert {r["metrics"]["drift_exponent"]["reason"] for r in records} == {"0 drift-corrected rows (< 8)"}
    measured = {(r["arch_hash"], r["phase"]): r["median_ms"] for r in rows}
    for phase, phase_reports in reports.items():
        assert sum(r.selected for r in phase_reports) == 1
        for report in phase_reports:
            random_points = [p for p in report.held_out if p["split"] == "random"]
            range_points = [p for p in report.held_out if p["split"] == "out_of_range"]
            # Cross-validation predicts every training row once; the out-of-range split holds the largest out.
            assert sorted(p["arch_hash"] for p in random_points) == sorted(
                r["arch_hash"] for r in rows if r["phase"] == phase
            )
            assert 1 <= len(range_points) < n_archs
            assert all(p["measured_ms"] == measured[(p["arch_hash"], phase)] for p in report.held_out)
            # The stored metrics are exactly those of the stored points.
            for split, points in (("random", random_points), ("out_of_range", range_points)):
                recomputed = accuracy(
                    np.array([p["measured_ms"] for p in points]), np.array([p["predicted_ms"] for p in points])
                )
                assert recomputed["mape"] == pytest.approx(report.metrics[split]["mape"])

    from db.models import LatencyPredictorRecord
    from db.session import session_scope

    with session_scope(db_url) as session:
        stored = session.query(LatencyPredictorRecord).filter_by(phase="decode", name="layerwise").one()
        decode_layerwise = next(r for r in reports["decode"] if r.name == "layerwise")
        assert stored.held_out == decode_layerwise.held_out

    unseen = next(c for c in candidate_pool(default_space(), 40, seed=99) if c.arch.arch_hash() not in measured)
    predicted = predict_ms(db_url, DEVICE, BACKEND, unseen.arch, unseen.workload)
    for phase in PHASES:
        ms, std = predicted[phase]
        truth = true_latency_ms(phase_features(unseen.arch, unseen.workload, phase))
        assert ms == pytest.approx(truth, rel=0.25)
        selected = next(r for r in reports[phase] if r.selected)
        assert (std is not None) == PREDICTORS[selected.name].has_uncertainty
        stated = stated_accuracy(db_url, DEVICE, BACKEND, phase)
        assert stated["predictor"] == selected.name
        assert stated["mape"] == pytest.approx(selected.metrics["random"]["mape"])
        assert stated["within_10"] == selected.metrics["random"]["within_10"]
        assert stated["p90_ape"] >= stated["mape"] * 0.5 and stated["n_measurements"] == n_archs
    assert stated_accuracy(db_url, DEVICE, BACKEND, "prefill")["noise_floor_mape"] == pytest.approx(0.5)


def test_too_few_rows_or_foreign_rows_store_nothing(sqlite_url: str) -> None:
    rows = simulated_rows(6, seed=2)
    short = [r for r in rows if r["phase"] == "decode"] + [r for r in rows if r["phase"] == "prefill"][:3]
    with pytest.raises(UserError, match="Only 3 stable prefill measurements of sim-cpu"):
        fit_and_store(sqlite_url, device=DEVICE, backend=BACKEND, peaks=PEAKS, rows=short)
    with pytest.raises(UserError, match="Measurements of sim-cpu .* were given to fit predictors for phone"):
        fit_and_store(sqlite_url, device="phone", backend=BACKEND, peaks=PEAKS, rows=rows)
    assert storage.list_predictors(sqlite_url) == []


def test_without_peaks_or_a_stored_profile_the_roofline_is_left_out(sqlite_url: str) -> None:
    rows = simulated_rows(5, seed=3)
    reports = fit_and_store(sqlite_url, device=DEVICE, backend=BACKEND, peaks=None, rows=rows)
    for phase_reports in reports.values():
        assert [r.name for r in phase_reports] == [name for name in PREDICTORS if name != "roofline"]
    assert len(storage.list_predictors(sqlite_url)) == len(PHASES) * (len(PREDICTORS) - 1)


def test_prediction_before_calibration_says_what_to_run(sqlite_url: str) -> None:
    candidate = candidate_pool(default_space(), 1, seed=0)[0]
    with pytest.raises(UserError, match="No latency predictor is stored for prefill .* run hilnas latency calibrate"):
        predict_ms(sqlite_url, DEVICE, BACKEND, candidate.arch, candidate.workload)
    with pytest.raises(UserError, match="run hilnas latency calibrate first"):
        stated_accuracy(sqlite_url, DEVICE, BACKEND, "decode")


def tiny_space() -> SearchSpace:
    """Models small enough that eager timing takes milliseconds."""
    space = default_space()
    params = dict(space.params)
    params.update(
        n_layers=IntParam(low=1, high=2),
        dim=CategoricalParam(choices=[32, 64]),
        block_repeat=CategoricalParam(choices=[1]),
        prefill_len=CategoricalParam(choices=[16, 32]),
        decode_kv_len=CategoricalParam(choices=[32, 64]),
        window=CategoricalParam(choices=[16]),
    )
    return SearchSpace(params=params)


def test_calibration_through_the_device_actor(ray_local: None, sqlite_url: str) -> None:
    import ray

    from latency_models.device_calibration import calibrate_device
    from latency_models.measurer import DeviceMeasurer
    from latency_models.protocol import ProtocolConfig
    from search.executor import device_actor

    protocol = ProtocolConfig(ci_half_width=0.5, time_cap_s=0.2, min_repeats=5, warmup=1, min_time_s=0.0)
    measurer = DeviceMeasurer(
        sqlite_url, "local-cpu", "torch-eager", protocol, stage="calibration", family_options={"vocab_size": 64}
    )
    steps: list[int] = []
    outcome = calibrate_device(
        measurer,
        budget=5,
        pool_size=30,
        noise=2,
        space=tiny_space(),
        space_options=SpaceOptions(vocab_size=64),
        on_step=lambda done, _total: steps.append(done),
    )
    assert steps == [1, 2, 3, 4, 5] and outcome.measured + len(outcome.failures) == 5
    # The roofline's ceilings were measured in the device's actor, not in this process.
    from db.models import DeviceProfile
    from db.session import session_scope

    with session_scope(sqlite_url) as session:
        profile = session.query(DeviceProfile).one()
        assert profile.peak_gflops == outcome.peaks["peak_gflops"] > 0 and profile.bandwidth_gbs > 0
        measured_on = profile.fingerprint["measured_on"]
    assert measured_on == ray.get(device_actor("local-cpu").node.remote())
    assert not measured_on.endswith(f":{os.getpid()}")
    rows = cache.load(sqlite_url, "local-cpu", "torch-eager")
    assert len(rows) == 2 * outcome.measured and {r["stage"] for r in rows} == {"calibration"}
    records = storage.list_predictors(sqlite_url, "local-cpu")
    assert len(records) == len(PHASES) * len(PREDICTORS)
    for record in records:
        assert record["metrics"]["noise_floor"]["n"] == 2  # two architectures re-measured
