"""MobileLLM-Flash end to end on a tiny backbone: every stage runs for real (training, Ray, the device actor,
the store) and lands in SQL; a finished run resumes as a no-op; bad input is one sentence and exit 2.

Calibration and verification measure with the torch-eager backend here to keep the suite fast (the
ExecuTorch path of the same protocol is covered by tests/test_latency_*.py); the export stage writes and
runs a real ExecuTorch program.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from db.models import Artifact, Measurement, PipelineRun, Trial
from db.session import session_scope
from tests.flash_support import tiny_spec, write_corpus

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def _hilnas(*args: str, env_db: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh process; it shares this session's backbone cache, so the tiny backbone trains once."""
    import os

    env = {**os.environ, "HILNAS_DB_URL": env_db}
    return subprocess.run([sys.executable, "-m", "hilnas", *args], capture_output=True, text=True, env=env, timeout=600)


def test_the_pipeline_runs_every_stage_into_the_store_and_exports_a_generating_program(
    corpus_file: Path, sqlite_url: str, tmp_path: Path
) -> None:
    from rich.console import Console

    from search.families.mobilellm_flash.pipeline import FlashPipeline
    from search.families.mobilellm_flash.pipeline_spec import FlashPipelineSpec

    spec = FlashPipelineSpec.model_validate(tiny_spec(corpus_file))
    console = Console(record=True, width=160)
    pipeline = FlashPipeline.start(spec, sqlite_url, console, None)
    outputs = pipeline.execute()

    assert pipeline.run.status() == "finished"
    assert [s["status"] for s in pipeline.run.stages()] == ["done"] * 5
    backbone = outputs["backbone"]
    assert backbone["heldout"]["loss"] < backbone["heldout"]["loss_before"]
    assert outputs["calibrate"]["measured"] >= 4
    search_id = outputs["search"]["search_id"]
    front = outputs["verify"]["front"]
    assert front and all(c["measured"]["decode"] > 0 and c["predicted"]["decode"] > 0 for c in front)

    with session_scope(sqlite_url) as session:
        trials = session.scalars(select(Trial).where(Trial.search_id == search_id)).all()
        assert len([t for t in trials if t.state == "complete"]) == 6
        assert all({"loss", "ppl", "prefill_ms", "decode_ms", "params"} <= set(t.metrics) for t in trials if t.metrics)
        verified = session.scalars(select(Measurement).where(Measurement.search_id == search_id)).all()
        assert verified and all("predicted_ms" in m.extra for m in verified)
        programs = session.scalars(
            select(Artifact).where(Artifact.search_id == search_id, Artifact.kind == "pte")
        ).all()
    assert len(programs) == 1
    program = programs[0]
    assert Path(program.path).is_file() and program.meta["matches_pytorch"] is True
    assert program.meta["generated"]  # the ExecuTorch runtime produced text from the prompt
    text = console.export_text()
    assert "Verified Pareto front" in text and "stage 5/5 export" in text

    again = FlashPipeline.resume(pipeline.run.run_id, sqlite_url, console, None)
    again.execute()  # every stage is done: nothing re-runs
    assert console.export_text().count("skipped (done)") == 5


def test_constraints_no_candidate_can_meet_are_refused_before_anything_is_stored(
    corpus_file: Path, sqlite_url: str, tmp_path: Path
) -> None:
    spec_file = tmp_path / "impossible.yaml"
    spec_file.write_text(yaml.safe_dump(tiny_spec(corpus_file, constraints=[{"metric": "params", "max": 1000}])))
    result = _hilnas("flash", "run", str(spec_file), env_db=sqlite_url)
    assert result.returncode == 2, result.stderr
    assert "No architecture in the space can meet params <= 1000" in result.stderr
    assert "Traceback" not in result.stderr
    with session_scope(sqlite_url) as session:
        assert session.scalars(select(PipelineRun)).all() == []


@pytest.mark.parametrize(
    ("backbone", "message"),
    [
        ({"checkpoint": "/nowhere/llama"}, "/nowhere/llama"),
        ({"corpus": "/nowhere/corpus.txt"}, "/nowhere/corpus.txt"),
        (
            {"max_context": 40, "seq_len": 32},
            "needs 49 positions (prefill 32, KV 48 plus the new token) but its backbone covers 40"[8:],
        ),
    ],
)
def test_a_missing_checkpoint_or_corpus_or_too_short_a_context_is_one_sentence_and_exit_2(
    backbone: dict, message: str, corpus_file: Path, sqlite_url: str, tmp_path: Path
) -> None:
    spec = tiny_spec(corpus_file)
    spec["backbone"].update(backbone)
    spec_file = tmp_path / "bad.json"
    spec_file.write_text(json.dumps(spec))
    result = _hilnas("flash", "run", str(spec_file), env_db=sqlite_url)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
