"""The staged EdgeTAM pipeline on a tiny recipe: every stage runs for real (training, Ray, the device actor, the
store), an interrupted run resumes without redoing finished stages, test-dev sequences are tracked and written
but never scored, and a damaged DAVIS folder is one sentence naming the sequence and frame, with nothing stored.

Calibration and verification measure with the torch-eager backend to keep the suite fast (the ExecuTorch path
of the same graphs is what ``benchmarks.edgetam_memory`` times); the export stage lowers one small graph to a
real ExecuTorch program.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from db.models import Artifact, LatencyPredictorRecord, Measurement, PipelineRun, Trial
from db.session import session_scope
from evaluators.vos.davis import DavisDataset, VideoSequence, write_sequence, write_split
from evaluators.vos.synthetic import SyntheticConfig, render_video
from hilnas.errors import UserError
from search.families.edgetam.pipeline import EdgeTAMPipeline
from search.families.edgetam.pipeline_spec import EdgeTAMPipelineSpec
from tests.edgetam_support import tiny_recipe

torch.set_num_threads(1)


def tiny_spec(cache: Path, **overrides: object) -> dict:
    perceiver_only = {"param": "memory", "values": ["perceiver"]}
    spec = {
        "name": "tiny-edgetam",
        "recipe": tiny_recipe(cache),
        "backend": "torch-eager",
        # A shared CI machine: precision is not what this test checks (as in test_edgetam_family.py).
        "protocol": {"ci_half_width": 10.0, "time_cap_s": 0.3, "min_repeats": 5, "min_time_s": 0.0, "loads": 2},
        "space": {
            "params": {
                "resolution": {"type": "categorical", "choices": [32]},
                "encoder_width": {"type": "categorical", "choices": [16, 24]},
                "encoder_depth": {"type": "int", "low": 1, "high": 2},
                "attention_layers": {"type": "int", "low": 1, "high": 1},
                "memory_frames": {"type": "int", "low": 1, "high": 3},
                "memory": {"type": "categorical", "choices": ["dense", "pooled", "perceiver"]},
                "global_latents": {"type": "categorical", "choices": [2], "condition": perceiver_only},
                "patch_latents": {"type": "categorical", "choices": [4], "condition": perceiver_only},
            }
        },
        "constraints": [{"metric": "frame_ms", "max": 1000}],
        "calibration": {"budget": 5, "pool": 12, "components": False},
        "search": {"trials": 4, "batch_size": 2, "max_concurrency": 2, "population_size": 2, "sampler": "random"},
        # Any error at all exceeds this tolerance, so verification always refits once and verifies again.
        "verify": {"max_points": 2, "max_rounds": 2, "tolerance": 0.01, "min_error_pct": 0.0},
        "export": {"max_models": 1, "graphs": ["mask_decoder"]},
    }
    spec.update(overrides)
    return spec


def _test_dev_folder(root: Path) -> Path:
    """A DAVIS folder whose ``test-dev`` sequence is annotated only on its first frame."""
    video = render_video("td-000", SyntheticConfig(frames=4, height=32, width=48), 0)
    write_sequence(root, VideoSequence(video.name, video.frames, video.labels[:1], video.frame_names))
    write_split(root, "test-dev", [video.name])
    return root


@pytest.mark.usefixtures("ray_local")
def test_staged_run_lands_in_sql_resumes_after_an_interrupt_and_predicts_test_dev(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from search.families.edgetam.cli import app

    console = Console(record=True, width=160)
    pipeline = EdgeTAMPipeline.start(
        EdgeTAMPipelineSpec.model_validate(tiny_spec(tmp_path / "cache")), sqlite_url, console, None
    )

    def interrupted(self: EdgeTAMPipeline, context: object) -> dict:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(EdgeTAMPipeline, "_verify", interrupted)
        with pytest.raises(KeyboardInterrupt):
            pipeline.execute()
    assert pipeline.run.status() == "interrupted"
    assert [s["status"] for s in pipeline.run.stages()] == ["done", "done", "done", "interrupted", "pending"]

    outputs = EdgeTAMPipeline.resume(pipeline.run.run_id, sqlite_url, console, None).execute()
    assert console.export_text(clear=False).count("skipped (done)") == 3  # teacher, calibrate and search are not redone
    assert pipeline.run.status() == "finished"
    assert outputs["teacher"]["path"].endswith(".pt") and Path(outputs["teacher"]["path"]).is_file()
    assert outputs["calibrate"]["measured"] >= 4
    search_id = outputs["search"]["search_id"]
    front = outputs["verify"]["front"]
    assert front and all(c["measured"]["edgetam_frame"] > 0 and c["predicted"]["edgetam_frame"] > 0 for c in front)
    assert all(c["measured"]["edgetam_frame"] <= 1000 for c in front)  # the spec's constraint
    rounds = outputs["verify"]["rounds"]
    assert len(rounds) == 2 and "edgetam_frame" in rounds[0]["refit"] and rounds[0]["errors_pct"]["edgetam_frame"]

    with session_scope(sqlite_url) as session:
        predictors = session.scalars(
            select(LatencyPredictorRecord).where(LatencyPredictorRecord.phase == "edgetam_frame")
        ).all()
        assert {p.name for p in predictors} >= {"flops-linear", "layerwise", "gaussian-process"}
        assert sum(p.selected for p in predictors) == 2  # calibrated, then refitted on the verified front too
        assert all(p.n_measurements >= 4 and "mape" in p.metrics["random"] for p in predictors)
        trials = session.scalars(select(Trial).where(Trial.search_id == search_id)).all()
        assert len([t for t in trials if t.state == "complete"]) == 4
        assert all({"jf", "frame_ms", "params"} <= set(t.metrics) for t in trials if t.state == "complete")
        verified = session.scalars(
            select(Measurement).where(Measurement.search_id == search_id, Measurement.phase == "edgetam_frame")
        ).all()
        assert verified and all(m.extra["predicted_ms"] > 0 for m in verified)
        programs = session.scalars(select(Artifact).where(Artifact.search_id == search_id, Artifact.kind == "pte"))
        assert [(Path(p.path).is_file(), p.meta["graph"]) for p in programs] == [(True, "mask_decoder")]

    again = EdgeTAMPipeline.resume(pipeline.run.run_id, sqlite_url, console, None)
    again.execute()
    assert console.export_text().count("skipped (done)") == 3 + 5

    masks = tmp_path / "masks"
    davis = _test_dev_folder(tmp_path / "davis")
    result = CliRunner().invoke(
        app,
        ["predict", str(pipeline.run.run_id), "--davis-root", str(davis), "--out", str(masks), "--db-url", sqlite_url],
    )
    assert result.exit_code == 0, result.output
    written = sorted((masks / "td-000").glob("*.png"))
    assert [p.name for p in written] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    assert all(Image.open(p).mode == "P" and Image.open(p).size == (48, 32) for p in written)


def test_test_dev_sequences_are_tracked_and_written_but_never_scored(tmp_path: Path) -> None:
    from search.families.edgetam.model import EdgeTAM, EdgeTAMConfig
    from search.families.edgetam.training import evaluate_jf, write_predictions

    video = DavisDataset(_test_dev_folder(tmp_path / "davis")).load_split("test-dev")[0]
    assert not video.fully_annotated and video.labels.shape == (1, 32, 48) and video.frames.shape[0] == 4
    model = EdgeTAM(EdgeTAMConfig(resolution=32, encoder_width=16, encoder_depth=1, dim=32, memory_dim=16))
    with pytest.raises(UserError, match="Sequence 'td-000' is annotated only on its first frame .* cannot be computed"):
        evaluate_jf(model, [video])
    folders = write_predictions(model, [video], tmp_path / "out")
    assert folders == [tmp_path / "out" / "td-000"]
    first = np.asarray(Image.open(folders[0] / "00000.png"))
    assert np.array_equal(first, video.labels[0])  # the prompt frame is given back as it was annotated
    assert len(list(folders[0].glob("*.png"))) == 4


def _toy_davis(root: Path, damage: str) -> Path:
    """A one-sequence DAVIS folder (train and val splits) with one kind of damage."""
    labels = np.ones((3, 8, 8), dtype=np.uint8)
    if damage == "late_object":
        labels[2, :2, :2] = 3
    names = ["00000", "00001", "00003"] if damage == "missing_frame" else ["00000", "00001", "00002"]
    write_sequence(root, VideoSequence("toy", np.zeros((3, 8, 8, 3), dtype=np.uint8), labels, names))
    if damage == "wrong_size":
        Image.fromarray(np.ones((8, 9), dtype=np.uint8)).convert("P").save(root / "Annotations/480p/toy/00002.png")
    for split in ("train", "val"):
        write_split(root, split, ["toy"])
    return root


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("late_object", "Sequence 'toy' frame 00002 contains object id 3, which is absent from the first frame"),
        ("wrong_size", "Sequence 'toy' frame 00002: mask is 9x8 but the image is 8x8"),
    ],
)
def test_a_damaged_davis_folder_names_sequence_and_frame_before_anything_is_stored(
    damage: str, message: str, sqlite_url: str, tmp_path: Path
) -> None:
    recipe = {"davis_root": str(_toy_davis(tmp_path / "davis", damage)), "cache_dir": str(tmp_path)}
    spec = EdgeTAMPipelineSpec.model_validate(tiny_spec(tmp_path, recipe=recipe))
    with pytest.raises(UserError, match=message):
        EdgeTAMPipeline.start(spec, sqlite_url, Console(), None)
    with session_scope(sqlite_url) as session:
        assert session.scalars(select(PipelineRun)).all() == []


def test_a_test_dev_split_to_score_on_is_refused_with_the_reason(sqlite_url: str, tmp_path: Path) -> None:
    davis = _test_dev_folder(tmp_path / "davis")
    write_sequence(davis, render_video("tr-000", SyntheticConfig(frames=4, height=32, width=48), 1))
    write_split(davis, "train", ["tr-000"])
    recipe = {"davis_root": str(davis), "eval_split": "test-dev", "cache_dir": str(tmp_path)}
    spec = EdgeTAMPipelineSpec.model_validate(tiny_spec(tmp_path, recipe=recipe))
    with pytest.raises(UserError, match="'td-000' of DAVIS split 'test-dev' is annotated only on its first frame"):
        EdgeTAMPipeline.start(spec, sqlite_url, Console(), None)


def test_the_cli_turns_a_missing_frame_into_one_sentence_and_exit_2(sqlite_url: str, tmp_path: Path) -> None:
    recipe = {"davis_root": str(_toy_davis(tmp_path / "davis", "missing_frame")), "cache_dir": str(tmp_path)}
    spec_file = tmp_path / "bad.json"
    spec_file.write_text(json.dumps(tiny_spec(tmp_path, recipe=recipe)))
    env = {**os.environ, "HILNAS_DB_URL": sqlite_url}
    result = subprocess.run(
        [sys.executable, "-m", "hilnas", "edgetam", "run", str(spec_file)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2, result.stderr
    assert "Sequence 'toy' is missing frame 00002." in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with session_scope(sqlite_url) as session:
        assert session.scalars(select(PipelineRun)).all() == []
