"""The quant-rotation family through the real driver, Ray and SQL; the ``hilnas quant`` commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from db.models import Search, Trial
from db.session import session_scope
from hilnas.errors import UserError
from search.driver import SearchDriver
from search.families.quant_rotation.checkpoint import load_model, save_model
from search.families.quant_rotation.family import QuantRotationFamily, seed_spread
from search.families.quant_rotation.pipeline import model_size_mb
from search.families.quant_rotation.quantizers import QuantSpec
from search.queries import trials_frame
from search.spec import parse_spec
from tests.quant_support import tiny_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    save_model(tiny_model(), path)
    return path


def _spec(model_path: Path, space: dict, trials: int) -> dict:
    return {
        "name": "quant",
        "family": "quant-rotation",
        "options": {
            "model": str(model_path),
            "seq_len": 16,
            "calibration_sequences": 4,
            "heldout_sequences": 4,
            "cayley_steps": 2,
        },
        "space": {"params": space},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"trials": trials, "batch_size": 4, "max_concurrency": 2, "trial_timeout_s": 300, "max_retries": 0},
    }


@pytest.mark.usefixtures("ray_local")
def test_search_stores_quantized_perplexity_size_and_seed_spread(sqlite_url: str, model_path: Path) -> None:
    space = {
        "rotation": {"type": "categorical", "choices": ["none", "random_hadamard", "learned"]},
        "seed": {"type": "int", "low": 0, "high": 3},
        "w_bits": {"type": "categorical", "choices": [4, 16]},
        "a_bits": {"type": "categorical", "choices": [4]},
        "kv_bits": {"type": "categorical", "choices": [4]},
        "gptq": {"type": "categorical", "choices": [True, False]},
    }
    spec = parse_spec(_spec(model_path, space, trials=6))
    result = SearchDriver.start(spec, sqlite_url).run()
    assert result.finished == 6 and result.failed == 0
    sizes = {bits: model_size_mb(tiny_model(), QuantSpec(w_bits=bits)) for bits in (4, 16)}
    assert sizes[4] < 0.7 * sizes[16]  # 4-bit block weights (embedding and head stay 16-bit)
    with session_scope(sqlite_url) as session:
        assert session.get(Search, result.search_id).status == "finished"
        trials = list(session.scalars(select(Trial).where(Trial.search_id == result.search_id)))
    for trial in trials:
        assert trial.state == "complete"
        assert 1.0 < trial.values["ppl"] < 1e6 and trial.values["size_mb"] > 0
        assert trial.values["size_mb"] == pytest.approx(sizes[trial.params["w_bits"]])
    spread = seed_spread(trials_frame(result.search_id, sqlite_url))
    assert spread["seeds"].sum() == 6
    assert set(spread["setting"]) <= {"W4A4KV4", "W16A4KV4"}
    assert (spread["min"] <= spread["median"]).all() and (spread["median"] <= spread["max"]).all()


def test_checkpoint_round_trip_and_bad_files(tmp_path: Path, model_path: Path) -> None:
    model = load_model(model_path)
    tokens = torch.randint(0, 256, (1, 8))
    assert torch.equal(model(tokens), tiny_model().eval()(tokens))
    with pytest.raises(UserError, match="no model file"):
        load_model(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(2)}, junk)
    with pytest.raises(UserError, match="not a Llama-style hilnas checkpoint"):
        load_model(junk)


def test_family_rejects_bit_widths_outside_2_to_16_and_too_little_data(model_path: Path) -> None:
    family = QuantRotationFamily()
    spec = parse_spec(_spec(model_path, {"w_bits": {"type": "categorical", "choices": [4, 32]}}, trials=1))
    with pytest.raises(UserError, match="w_bits allows 32, outside the supported range 2-16"):
        family.check_space(spec.space)
    from search.families.quant_rotation.data import calibration_sequences

    with pytest.raises(UserError, match="fewer calibration windows than requested"):
        calibration_sequences(10**9, 64)


def _hilnas(*args: str, db_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HILNAS_DB_URL": db_url, "OMP_NUM_THREADS": "1"}
    code = "from hilnas.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO)


def test_quant_eval_command_and_its_bad_input(tmp_path: Path, model_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 's.db'}"
    common = ["--model", str(model_path), "--seq-len", "16", "--heldout", "4", "--calibration", "4"]
    result = _hilnas("quant", "eval", *common, "--rotation", "random_hadamard", "--bits", "W4A8KV8", db_url=db_url)
    assert result.returncode == 0, result.stderr
    assert "FP32" in result.stdout and "W4A8KV8" in result.stdout and "random_hadamard" in result.stdout
    # (unknown rotation kinds and too small a calibration set are the same UserError path, tested in Python)
    bad = _hilnas("quant", "eval", *common, "--bits", "W4A1KV4", db_url=db_url)
    assert bad.returncode == 2, bad.stderr
    assert "activation bit width 1 is outside the supported range 2-16" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    not_llama = tmp_path / "not_llama.pt"
    torch.save({"config": {"dim": 8}, "state_dict": {}}, not_llama)
    bad = _hilnas("quant", "eval", "--model", str(not_llama), db_url=db_url)
    assert bad.returncode == 2 and "not a Llama-style hilnas checkpoint" in bad.stderr


def test_quant_search_command_refuses_bad_bit_widths_before_storing(tmp_path: Path, model_path: Path) -> None:
    import yaml

    db_url = f"sqlite:///{tmp_path / 's.db'}"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(model_path, {"a_bits": {"type": "int", "low": 1, "high": 8}}, trials=1)))
    result = _hilnas("quant", "search", str(path), "--no-progress", db_url=db_url)
    assert result.returncode == 2 and "a_bits allows 1, outside the supported range 2-16" in result.stderr
    listing = _hilnas("search", "list", db_url=db_url)
    assert "quant-rotation" not in listing.stdout
