"""The MobileLLM-Flash backbone: tokenizer, training, the atomic cache, local corpora and HF Llama checkpoints.

Everything runs for real on tiny models (dim 32, 2 layers, a 300-token vocabulary) trained on a few
thousand tokens of standard-library docstrings written to a local .txt file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from evaluators.corpus import CorpusConfig, _is_validation, build_stdlib_corpus, read_local_corpus
from hilnas.errors import UserError
from search.families.mobilellm_flash import backbone as backbone_module
from search.families.mobilellm_flash.backbone import (
    Backbone,
    BackboneConfig,
    load_backbone,
    load_or_train_backbone,
)
from search.families.mobilellm_flash.hf_checkpoint import load_hf_llama, save_hf_llama
from search.families.mobilellm_flash.tokenizer import DOCUMENT_SEPARATOR, TextTokenizer, train_tokenizer

TINY = {
    "dim": 32,
    "n_layers": 2,
    "n_heads": 2,
    "n_kv_heads": 1,
    "head_dim": 16,
    "ffn_dim": 64,
    "vocab_size": 300,
    "max_context": 64,
    "seq_len": 32,
    "batch_size": 8,
    "train_tokens": 16_000,
    "warmup_steps": 5,
    "threads": 1,
    "eval_tokens": 2048,
    "validation_fraction": 0.2,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    config = CorpusConfig(modules=("json/*.py", "textwrap.py", "argparse.py", "string.py"))
    corpus = build_stdlib_corpus(config, cache_dir=tmp_path_factory.mktemp("stdlib"))
    return [" ".join(d.split()) for d in corpus.train + corpus.validation]  # one paragraph per document


@pytest.fixture(scope="module")
def corpus_file(documents: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def trained(corpus_file: Path, cache_dir: Path) -> Backbone:
    return load_or_train_backbone(BackboneConfig(corpus=str(corpus_file), **TINY), cache_dir, show_progress=False)


def test_tokenizer_round_trips_text_and_separates_documents(documents: list[str], tmp_path: Path) -> None:
    tokenizer = train_tokenizer(documents, vocab_size=300)
    assert 257 < tokenizer.vocab_size <= 300 and tokenizer.separator == DOCUMENT_SEPARATOR
    text = "Return the naïve café's 漢字 string\n\twith tabs,  spaces and emoji 🙂."
    assert tokenizer.decode(tokenizer.encode(text)) == text  # byte-level: nothing is unknown
    assert len(tokenizer.encode(documents[0])) < len(documents[0].encode())  # merges were learnt
    tokenizer.save(tmp_path / "tokenizer.json")
    reloaded = TextTokenizer.from_file(tmp_path / "tokenizer.json")
    assert reloaded.encode(documents[1]) == tokenizer.encode(documents[1])

    stream = tokenizer.encode_documents(documents[:3])
    assert stream.dtype == np.uint16
    pieces = np.split(stream, np.flatnonzero(stream == tokenizer.separator_id))
    decoded = [tokenizer.decode(piece[piece != tokenizer.separator_id].tolist()) for piece in pieces]
    assert decoded == documents[:3]


def test_training_lowers_heldout_loss(trained: Backbone, corpus_file: Path) -> None:
    info = trained.info
    assert info["source"] == "trained" and not trained.model.training
    assert info["heldout"]["loss_before"] == pytest.approx(np.log(300), abs=0.3)  # untrained: about uniform
    assert info["heldout"]["loss"] < info["heldout"]["loss_before"] - 1.0
    curve = info["training"]["loss_curve"]
    assert curve[-1]["loss"] < curve[0]["loss"] - 1.0 and curve[-1]["tokens"] == info["training"]["tokens_seen"]
    assert info["params"] == trained.model.config.n_params() == sum(p.numel() for p in trained.model.parameters())
    assert info["corpus"]["train_tokens"] == len(trained.train_tokens) and trained.val_tokens.size > 0
    first_document = read_local_corpus(corpus_file, TINY["validation_fraction"]).train[0]
    end = np.flatnonzero(trained.train_tokens == trained.tokenizer.separator_id)[0]
    assert trained.tokenizer.decode(trained.train_tokens[:end].tolist()) == first_document


def test_cache_hit_reloads_the_same_backbone_without_training(trained: Backbone, corpus_file: Path) -> None:
    weights = trained.path / "model.safetensors"
    written = weights.stat().st_mtime_ns
    # A copy of the corpus elsewhere, and another thread count, name the same backbone.
    moved = trained.path.parent.parent / "moved.txt"
    shutil.copy(corpus_file, moved)
    config = BackboneConfig(corpus=str(moved), **{**TINY, "threads": 2})
    again = load_or_train_backbone(config, trained.path.parent.parent, show_progress=False)
    assert again.path == trained.path and again.key == trained.key and weights.stat().st_mtime_ns == written
    assert again.info == trained.info
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    assert np.array_equal(again.train_tokens, trained.train_tokens)
    assert np.array_equal(again.val_tokens, trained.val_tokens)
    worker = load_backbone(trained.path)  # what a Ray worker does with Backbone.path
    tokens = torch.from_numpy(trained.val_tokens[:32].astype(np.int64))[None]
    assert torch.equal(worker.model(tokens), trained.model(tokens))


def test_key_follows_everything_that_changes_the_result(corpus_file: Path, tmp_path: Path) -> None:
    base = BackboneConfig(corpus=str(corpus_file), **TINY)
    assert base.key() == BackboneConfig(corpus=str(corpus_file), **TINY).key()
    assert base.key() != base.model_copy(update={"seed": 1}).key()
    assert base.key() != base.model_copy(update={"ffn_dim": 96}).key()
    edited = tmp_path / "edited.txt"
    edited.write_text(corpus_file.read_text(encoding="utf-8") + "\n\nOne more document at the end of the file.\n")
    assert base.key() != base.model_copy(update={"corpus": str(edited)}).key()


def test_interrupted_write_leaves_no_cache(corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the weights are written (here: saving the token streams fails) leaves nothing behind."""

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(backbone_module.np, "save", disk_full)
    config = BackboneConfig(corpus=str(corpus_file), **{**TINY, "train_tokens": 2_000})
    with pytest.raises(OSError, match="No space left"):
        load_or_train_backbone(config, tmp_path, show_progress=False)
    assert list((tmp_path / "backbones").iterdir()) == []


def test_losing_a_concurrent_build_keeps_the_published_backbone(trained: Backbone) -> None:
    """Two processes that build the same key: the second rename fails, and its staging folder is dropped."""
    written = (trained.path / "model.safetensors").stat().st_mtime_ns
    streams = (trained.train_tokens, trained.val_tokens)
    backbone_module._write_atomically(trained.path, trained.model, trained.tokenizer, streams, {"key": "other"})
    assert (trained.path / "model.safetensors").stat().st_mtime_ns == written
    assert json.loads((trained.path / "info.json").read_text())["key"] == trained.key
    assert not [p for p in trained.path.parent.iterdir() if p.name.endswith(".partial")]


def test_local_txt_and_jsonl_corpora_split_alike(documents: list[str], tmp_path: Path) -> None:
    text_file = tmp_path / "docs.txt"
    text_file.write_text("\n\n\n".join(documents[:60]) + "\n   \n", encoding="utf-8")
    lines_file = tmp_path / "docs.jsonl"
    records = [json.dumps({"text": d, "id": i}) for i, d in enumerate(documents[:60])]
    lines_file.write_text("\n".join(records[:30] + ["", json.dumps({"text": "  "})] + records[30:]), encoding="utf-8")
    from_text, from_lines = read_local_corpus(text_file, 0.3), read_local_corpus(lines_file, 0.3)
    assert from_text.train == from_lines.train and from_text.validation == from_lines.validation
    assert sorted(from_text.train + from_text.validation) == sorted(documents[:60])
    assert from_text.validation == [d for d in documents[:60] if _is_validation(d, 0.3)]
    assert from_text.stats["documents"] == 60 and from_text.path == text_file


def _tiny_llama(directory: Path, tokenizer: TextTokenizer, tie: bool) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=320,  # larger than the tokenizer, as real checkpoints often are
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=500.0,
        tie_word_embeddings=tie,
        eos_token_id=tokenizer.separator_id,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # norms away from 1 and larger weights, so mistakes show
            parameter.add_(torch.randn_like(parameter) * 0.1)
    model.save_pretrained(directory)
    tokenizer.save(directory / "tokenizer.json")
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_hf_llama_checkpoint_gives_transformers_logits(documents: list[str], tmp_path: Path, tie: bool) -> None:
    tokenizer = train_tokenizer(documents, vocab_size=300)
    reference = _tiny_llama(tmp_path, tokenizer, tie)
    model, loaded_tokenizer = load_hf_llama(tmp_path)
    assert model.config.share_embeddings == tie and model.config.head_dim == 8 and model.config.rope_theta == 500.0
    assert loaded_tokenizer.separator_id == tokenizer.separator_id
    tokens = torch.randint(0, 320, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens).logits, atol=2e-5, rtol=1e-4)


def test_saved_backbone_is_a_checkpoint_transformers_reads(trained: Backbone, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    save_hf_llama(trained.model, trained.tokenizer, tmp_path)
    reference = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    tokens = torch.from_numpy(trained.val_tokens[:48].astype(np.int64))[None]
    with torch.no_grad():
        torch.testing.assert_close(reference(tokens).logits, trained.model(tokens), atol=2e-5, rtol=1e-4)


def test_checkpoint_formats_round_trip(trained: Backbone, tmp_path: Path) -> None:
    """model.safetensors, pytorch_model.bin and an index of safetensors shards load to the same model."""
    tokens = torch.from_numpy(trained.val_tokens[:48].astype(np.int64))[None]
    expected = trained.model(tokens)
    single = tmp_path / "single"
    save_hf_llama(trained.model, trained.tokenizer, single)
    tensors = load_file(single / "model.safetensors")

    pickled = tmp_path / "pickled"
    shutil.copytree(single, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(tensors, pickled / "pytorch_model.bin")

    sharded = tmp_path / "sharded"
    shutil.copytree(single, sharded)
    (sharded / "model.safetensors").unlink()
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        save_file({name: tensors[name] for name in part}, sharded / f"model-{i}.safetensors")
        weight_map.update({name: f"model-{i}.safetensors" for name in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))

    for folder in (single, pickled, sharded):
        model, tokenizer = load_hf_llama(folder)
        assert model.config == trained.model.config, folder.name
        assert tokenizer.encode("def main():") == trained.tokenizer.encode("def main():")
        torch.testing.assert_close(model(tokens), expected, atol=0, rtol=0)


def test_checkpoint_backbone_is_loaded_not_trained(trained: Backbone, corpus_file: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    save_hf_llama(trained.model, trained.tokenizer, checkpoint)
    config = BackboneConfig(checkpoint=str(checkpoint), corpus=str(corpus_file), seq_len=32, validation_fraction=0.2)
    loaded = load_or_train_backbone(config, tmp_path / "cache", show_progress=False)
    assert loaded.info["source"] == "checkpoint" and loaded.info["training"] is None
    assert loaded.info["heldout"]["loss_before"] is None
    assert loaded.info["heldout"]["loss"] == pytest.approx(trained.info["heldout"]["loss"], rel=0.05)
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    corpus = read_local_corpus(corpus_file, 0.2)
    assert np.array_equal(loaded.val_tokens, trained.tokenizer.encode_documents(corpus.validation))


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def _llama_folder(root: Path, trained: Backbone, **config_changes: object) -> str:
    folder = root / "llama"
    save_hf_llama(trained.model, trained.tokenizer, folder)
    hf_config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**hf_config, **config_changes}))
    return str(folder)


def _short_validation_corpus(documents: list[str], root: Path) -> str:
    """Plenty of training text and one short document that the stable hash sends to validation."""
    short = next(f"A short note {i}." for i in range(10_000) if _is_validation(f"A short note {i}.", 0.05))
    train = [d for d in documents if not _is_validation(d, 0.05)]
    return _write(root / "short_validation.txt", "\n\n".join([*train, short]))


BAD_INPUTS = {
    "missing checkpoint": (lambda root, t, d: {"checkpoint": str(root / "nowhere")}, "no checkpoint folder"),
    "checkpoint without config": (
        lambda root, t, d: {"checkpoint": str(Path(_write(root / "empty" / "notes.txt", "hi")).parent)},
        "has no config.json",
    ),
    "not a Llama": (
        lambda root, t, d: {"checkpoint": _llama_folder(root, t, model_type="gpt2", architectures=["GPT2LMHeadModel"])},
        "not a Llama-style checkpoint",
    ),
    "rope scaling": (
        lambda root, t, d: {"checkpoint": _llama_folder(root, t, rope_scaling={"rope_type": "llama3", "factor": 8.0})},
        "RoPE scaling",
    ),
    "attention bias": (
        lambda root, t, d: {"checkpoint": _llama_folder(root, t, attention_bias=True)},
        "attention bias",
    ),
    "wrong shapes": (lambda root, t, d: {"checkpoint": _llama_folder(root, t, intermediate_size=96)}, "has shape"),
    "missing corpus": (lambda root, t, d: {"corpus": str(root / "absent.txt")}, "no corpus file"),
    "empty corpus": (lambda root, t, d: {"corpus": _write(root / "empty.jsonl", "\n\n")}, "holds no text"),
    "not JSON lines": (
        lambda root, t, d: {"corpus": _write(root / "bad.jsonl", '{"text": "a"}\nnot json\n')},
        "Line 2",
    ),
    "no text field": (
        lambda root, t, d: {"corpus": _write(root / "bad.jsonl", '{"body": "a"}\n')},
        '"text" string field',
    ),
    "too small": (
        lambda root, t, d: {"corpus": _write(root / "few.txt", "\n\n".join(d[:40])), "batch_size": 64},
        "training tokens, fewer than",
    ),
    "no validation": (
        lambda root, t, d: {"corpus": _write(root / "all.txt", "\n\n".join(d)), "validation_fraction": 1e-9},
        "no validation documents",
    ),
    "tiny validation": (
        lambda root, t, d: {"corpus": _short_validation_corpus(d, root), "validation_fraction": 0.05},
        "fewer than one window",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_sentence_and_writes_nothing(
    case: str, trained: Backbone, documents: list[str], corpus_file: Path, tmp_path: Path
) -> None:
    make_changes, expected = BAD_INPUTS[case]
    changes = {"corpus": str(corpus_file), **make_changes(tmp_path / "input", trained, documents)}
    config = BackboneConfig(**{**TINY, **changes})
    with pytest.raises(UserError) as raised:
        load_or_train_backbone(config, tmp_path / "cache", show_progress=False)
    message = str(raised.value)
    assert expected in message and message.endswith(".") and "\n" not in message, message
    assert not (tmp_path / "cache" / "backbones").exists()
