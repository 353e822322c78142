"""The quant-rotation family through the real driver, Ray and SQL; the ``hilnas quant`` commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

from db.models import Search, Trial
from db.session import session_scope
from evaluators.corpus import CorpusConfig, build_stdlib_corpus
from hilnas.errors import UserError
from search.driver import SearchDriver
from search.families.mobilellm_flash.backbone import BackboneConfig, load_or_train_backbone
from search.families.mobilellm_flash.hf_checkpoint import save_hf_llama
from search.families.quant_rotation.checkpoint import load_checkpoint, save_model
from search.families.quant_rotation.data import calibration_set, heldout_set
from search.families.quant_rotation.family import QuantRotationFamily, seed_spread
from search.families.quant_rotation.pipeline import model_size_mb
from search.families.quant_rotation.quantizers import QuantSpec
from search.families.quant_rotation.target import load_target
from search.queries import trials_frame
from search.spec import parse_spec
from tests.quant_support import TINY_VOCAB, save_tiny_checkpoint, tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return save_tiny_checkpoint(tmp_path / "tiny.pt")


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


def test_checkpoint_file_and_hf_folder_round_trip_with_their_tokenizers(tmp_path: Path, model_path: Path) -> None:
    tokens = torch.randint(0, TINY_VOCAB, (1, 8))
    reference = tiny_model()(tokens)
    folder = tmp_path / "llama"
    save_hf_llama(tiny_model(), tiny_tokenizer(), folder)
    for path in (model_path, folder):
        model, tokenizer = load_checkpoint(path)
        assert torch.allclose(model(tokens), reference, atol=1e-6)
        assert tokenizer.encode("def main():") == tiny_tokenizer().encode("def main():")
        target = load_target(path)  # the standard-library corpus encoded by the checkpoint's own tokenizer
        assert target.streams.validation.max() < TINY_VOCAB and len(target.streams.train) > 10 * len(
            target.streams.validation
        )
        assert (
            list(target.streams.validation[:20])
            == tiny_tokenizer().encode_documents(build_stdlib_corpus().validation)[:20].tolist()
        )


def test_a_backbone_folder_brings_its_own_token_streams(tmp_path: Path) -> None:
    documents = build_stdlib_corpus(CorpusConfig(modules=("json/*.py", "textwrap.py")), tmp_path / "stdlib")
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n\n".join(" ".join(d.split()) for d in documents.train + documents.validation))
    config = BackboneConfig(
        corpus=str(corpus), dim=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, ffn_dim=64, vocab_size=300,
        max_context=64, seq_len=32, batch_size=4, train_tokens=1024, warmup_steps=1, threads=1, eval_tokens=256,
        validation_fraction=0.2,
    )  # fmt: skip
    backbone = load_or_train_backbone(config, tmp_path / "cache", show_progress=False)
    target = load_target(backbone.path)
    assert np.array_equal(target.streams.train, backbone.train_tokens)
    assert np.array_equal(target.streams.validation, backbone.val_tokens)
    tokens = torch.from_numpy(backbone.val_tokens[:16].astype(np.int64))[None]
    assert torch.equal(target.model(tokens), backbone.model(tokens))


def test_bad_model_paths_and_window_counts_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no model file or checkpoint folder"):
        load_target(tmp_path / "absent.pt")
    with pytest.raises(UserError, match="no config.json"):
        load_target(tmp_path)
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(2)}, junk)
    with pytest.raises(UserError, match="not a Llama-style hilnas checkpoint"):
        load_target(junk)
    bare = tmp_path / "bare.pt"
    save_model(tiny_model(), bare)  # a model without its tokenizer has no text to be scored on
    assert load_checkpoint(bare)[1] is None
    with pytest.raises(UserError, match="holds no tokenizer"):
        load_target(bare)
    stream = np.arange(100)
    assert calibration_set(stream, 3, 9, seed=0).shape == (3, 10)
    heldout = heldout_set(stream, 4, 9)
    assert heldout.shape == (4, 10) and len(set(heldout[:, 0].tolist())) == 4
    assert all(torch.equal(row, torch.arange(row[0], row[0] + 10)) for row in heldout)  # consecutive tokens
    assert all((heldout[:, 0] % 9 == 0).tolist())  # on the grid of windows sharing one token: none predicted twice
    with pytest.raises(UserError, match=r"fewer calibration windows than requested \(91 < 92 of 10 tokens\)"):
        calibration_set(stream, 92, 9)
    with pytest.raises(UserError, match=r"fewer held-out windows than requested \(11 < 12 of 10 tokens\)"):
        heldout_set(stream, 12, 9)


def test_family_rejects_bit_widths_outside_2_to_16_and_too_long_windows(model_path: Path) -> None:
    family = QuantRotationFamily()
    spec = parse_spec(_spec(model_path, {"w_bits": {"type": "categorical", "choices": [4, 32]}}, trials=1))
    with pytest.raises(UserError, match="w_bits allows 32, outside the supported range 2-16"):
        family.check_space(spec.space)
    long_windows = QuantRotationFamily(spec.build_family().options.model_copy(update={"seq_len": 65}))
    with pytest.raises(UserError, match="seq_len 65 is longer than the model's 64 positions"):
        long_windows.load_workload()


def _hilnas(*args: str, db_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HILNAS_DB_URL": db_url, "OMP_NUM_THREADS": "1"}
    code = "from hilnas.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO)


def test_quant_eval_command_on_a_hugging_face_folder_and_its_bad_input(tmp_path: Path, model_path: Path) -> None:
    """(The hilnas file format goes through the same ``load_target``; the search test above runs on one.)"""
    db_url = f"sqlite:///{tmp_path / 's.db'}"
    folder = tmp_path / "llama"
    save_hf_llama(tiny_model(), tiny_tokenizer(), folder)
    common = ["--model", str(folder), "--seq-len", "16", "--heldout", "4", "--calibration", "4"]
    result = _hilnas(
        "quant", "eval", *common, "--rotation", "random_hadamard", "--bits", "W4A8KV8", "--gptq", "--w-clip-search",
        db_url=db_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for shown in ("FP32", "W4A8KV8", "random_hadamard", "GPTQ+clip", "standard-library corpus"):
        assert shown in result.stdout
    # (unknown rotation kinds and too small a calibration set are the same UserError path, tested in Python)
    bad = _hilnas("quant", "eval", *common, "--bits", "W4A1KV4", db_url=db_url)
    assert bad.returncode == 2, bad.stderr
    assert "activation bit width 1 is outside the supported range 2-16" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    not_llama = tmp_path / "not_llama.pt"
    torch.save({"config": {"dim": 8}, "state_dict": {}}, not_llama)
    bad = _hilnas("quant", "eval", "--model", str(not_llama), db_url=db_url)
    assert bad.returncode == 2 and "not a Llama-style hilnas checkpoint" in bad.stderr
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    bad = _hilnas("quant", "eval", "--model", str(folder), db_url=db_url)
    assert bad.returncode == 2 and "is not a Llama-style checkpoint" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_quant_search_command_refuses_bad_bit_widths_before_storing(tmp_path: Path, model_path: Path) -> None:
    import yaml

    db_url = f"sqlite:///{tmp_path / 's.db'}"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(model_path, {"a_bits": {"type": "int", "low": 1, "high": 8}}, trials=1)))
    result = _hilnas("quant", "search", str(path), "--no-progress", db_url=db_url)
    assert result.returncode == 2 and "a_bits allows 1, outside the supported range 2-16" in result.stderr
    listing = _hilnas("search", "list", db_url=db_url)
    assert "quant-rotation" not in listing.stdout
