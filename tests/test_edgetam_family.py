"""The EdgeTAM family end to end: registry, space checks, teacher cache, quality and latency, and a search."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from db.models import Measurement, Trial
from db.session import session_scope
from search.families.edgetam.family import EdgeTAMFamily
from search.family import InvalidCandidate, TrialContext
from search.registry import create_family
from search.spec import parse_spec
from tests.edgetam_support import tiny_recipe

torch.set_num_threads(1)
CANDIDATE = {
    "resolution": 32,
    "encoder_width": 16,
    "encoder_depth": 1,
    "attention_layers": 1,
    "memory_frames": 2,
    "memory": "perceiver",
    "global_latents": 4,
    "patch_latents": 4,
}


def _options(cache: Path) -> dict:
    return tiny_recipe(cache) | {
        "backend": "torch-eager",  # ExecuTorch export is exercised by benchmarks.edgetam_memory
        # A shared CI machine: precision is not what these tests check.
        "protocol": {"time_cap_s": 0.5, "ci_half_width": 10.0, "min_time_s": 0.0, "loads": 2},
    }


def _context(tmp_path: Path) -> TrialContext:
    return TrialContext(search_id=0, trial_number=0, attempt=1, seed=1, artifact_dir=tmp_path)


def test_registered_and_rejects_untileable_perceiver_with_reason(tmp_path: Path) -> None:
    family = create_family("edgetam", _options(tmp_path))
    assert isinstance(family, EdgeTAMFamily)
    bad = CANDIDATE | {"resolution": 96, "patch_latents": 64}
    with pytest.raises(InvalidCandidate, match="64 patch latents .8x8 windows. do not tile the 12x12 feature map"):
        family.check_candidate(bad)
    assert family.arch_hash(bad) is None  # the driver records invalid candidates without a cache key
    with pytest.raises(InvalidCandidate, match="unknown EdgeTAM parameters"):
        family.check_candidate(CANDIDATE | {"width": 3})
    family.check_candidate(CANDIDATE)


def test_arch_hash_ignores_perceiver_settings_of_other_variants(tmp_path: Path) -> None:
    family = create_family("edgetam", _options(tmp_path))
    dense = CANDIDATE | {"memory": "dense"}
    dense_without = {k: v for k, v in dense.items() if k not in ("global_latents", "patch_latents")}
    assert family.arch_hash(dense) == family.arch_hash(dense_without)
    assert family.arch_hash(CANDIDATE) != family.arch_hash(CANDIDATE | {"patch_latents": 16})


def test_evaluate_inherits_from_cached_teacher_and_measures_components(tmp_path: Path) -> None:
    family = create_family("edgetam", _options(tmp_path))
    evaluation = family.evaluate(CANDIDATE, _context(tmp_path))
    assert 0.0 <= evaluation.metrics["jf"] <= 1.0
    assert evaluation.metrics["jf"] == pytest.approx((evaluation.metrics["j_mean"] + evaluation.metrics["f_mean"]) / 2)
    assert evaluation.metrics["memory_tokens"] == (2 + 1) * (4 + 4)
    assert 0 < evaluation.info["inherited_tensors"] < evaluation.info["tensors"]
    teachers = list(tmp_path.glob("teacher-*.pt"))
    assert len(teachers) == 1
    stamp = teachers[0].stat().st_mtime_ns
    again = create_family("edgetam", _options(tmp_path))
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.teacher().state_dict().values(), family.teacher().state_dict().values(), strict=True)
    )
    assert teachers[0].stat().st_mtime_ns == stamp  # loaded, not retrained

    measured = family.measure(CANDIDATE, "local-cpu", _context(tmp_path))
    components = ("image_encoder", "memory_encoder", "memory_attention", "mask_decoder", "frame")
    assert all(measured.metrics[f"{name}_ms"] > 0 for name in components)
    assert {row["phase"] for row in measured.measurements} == {f"edgetam_{name}" for name in components}
    assert all(row["shape"]["memory_frames"] == 2 and row["backend"] == "torch-eager" for row in measured.measurements)


@pytest.mark.usefixtures("ray_local")
def test_search_runs_through_the_driver_and_lands_in_sql(sqlite_url: str, tmp_path: Path) -> None:
    from search.driver import SearchDriver

    spec = parse_spec(
        {
            "name": "edgetam-tiny",
            "family": "edgetam",
            "options": _options(tmp_path) | {"eval_videos": 1},
            "objectives": [{"name": "jf", "direction": "maximize"}, {"name": "frame_ms", "direction": "minimize"}],
            "space": {
                "params": {
                    "resolution": {"type": "categorical", "choices": [32]},
                    "encoder_width": {"type": "categorical", "choices": [16]},
                    "encoder_depth": {"type": "int", "low": 1, "high": 1},
                    "attention_layers": {"type": "int", "low": 1, "high": 1},
                    "memory_frames": {"type": "int", "low": 1, "high": 2},
                    "memory": {"type": "categorical", "choices": ["perceiver"]},
                    "global_latents": {"type": "categorical", "choices": [2]},
                    "patch_latents": {"type": "categorical", "choices": [4, 9]},
                }
            },
            "sampler": {"name": "random", "seed": 3},
            "budget": {"trials": 4, "batch_size": 4, "max_concurrency": 1, "trial_timeout_s": 300, "max_retries": 0},
        }
    )
    result = SearchDriver.start(spec, sqlite_url).run()
    with session_scope(sqlite_url) as session:
        trials = session.scalars(select(Trial).where(Trial.search_id == result.search_id)).all()
        phases = set(session.scalars(select(Measurement.phase).where(Measurement.search_id == result.search_id)))
        states = {t.params["patch_latents"]: t.state for t in trials}
        complete = [t for t in trials if t.state == "complete"]
        invalid = [t for t in trials if t.state == "invalid"]
        assert result.finished == 4
        assert all("jf" in t.metrics and "memory_attention_ms" in t.metrics for t in complete)
        assert all("do not tile the 4x4 feature map" in t.error for t in invalid)
    assert states.get(4) == "complete" and (9 not in states or states[9] == "invalid")
    if complete:
        assert "edgetam_memory_attention" in phases


def test_a_component_a_worker_exported_is_loaded_here_with_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the family's measure does with export workers, on one component (all five take 40 s to lower)."""
    from latency_models.backends import get_backend
    from latency_models.export_pool import ExportPool
    from latency_models.measure import check_outputs
    from search.families.edgetam import latency
    from search.families.edgetam.model import EdgeTAM

    config = create_family("edgetam", _options(tmp_path)).config(CANDIDATE)
    jobs = [job for job in latency.component_jobs(config, tmp_path / "exports") if job.name == "mask_decoder"]
    with ExportPool("executorch-xnnpack", threads=1, workers=1) as pool:
        pool.submit("candidate", jobs)
        files = pool.take("candidate", ["mask_decoder"])

    def no_export_here(*_args: object) -> None:
        raise AssertionError("the timing process exported a component")

    monkeypatch.setattr(latency, "export_checked", no_export_here)
    torch.manual_seed(0)  # as the family seeds the model it times
    model = EdgeTAM(config)
    backend = get_backend("executorch-xnnpack")
    loaded = latency.prepare_components(model, backend, tmp_path / "timing", ["mask_decoder"], exported=files)
    assert list(loaded) == ["mask_decoder"] and not (tmp_path / "timing").exists()
    assert loaded["mask_decoder"].max_diff == files["mask_decoder"].max_diff < 1e-3  # checked in the worker
    component = latency.component_graphs(model)["mask_decoder"]
    with torch.no_grad():
        expected = component.graph(*component.inputs)
    # the program the worker lowered computes what this process's model does: same weights, same inputs
    assert check_outputs(loaded["mask_decoder"].prepared, tuple(expected), "mask_decoder") < 1e-3
