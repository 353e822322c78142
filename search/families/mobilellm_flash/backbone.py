"""The pretrained parent of every MobileLLM-Flash candidate, built once and cached.

Embedded default: a byte-level BPE tokenizer and a small MobileLLM trained from scratch on the
standard-library corpus (``evaluators.corpus``), about three CPU minutes. A user may instead name a
local text/JSONL corpus, and a local Hugging Face Llama-style checkpoint (then nothing is trained:
model and tokenizer come from the checkpoint, and the corpus is only encoded with its tokenizer).

The cache folder ``<cache_dir>/backbones/<key>/`` is itself a Llama checkpoint (config.json,
model.safetensors, tokenizer.json; see ``hf_checkpoint``) plus the encoded corpus (train/validation
token streams as .npy) and ``info.json`` (losses, timings, corpus statistics). It is assembled in a
hidden staging folder and renamed into place, so an interrupted or concurrent build never leaves a
half cache, and a failed build writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from evaluators.corpus import Corpus, CorpusConfig, build_stdlib_corpus, read_local_corpus
from hilnas.errors import UserError
from hilnas.settings import get_settings
from search.families.mobilellm_flash.hf_checkpoint import load_hf_llama, save_hf_llama
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig
from search.families.mobilellm_flash.tokenizer import TextTokenizer, train_tokenizer

#: Bump when a change to the code changes what a build produces, so old caches are not reused.
CACHE_VERSION = 2
#: The training split must hold this many batches of distinct windows, or the model just memorises it.
MIN_TRAIN_BATCHES = 4
INFO_FILE = "info.json"

_ARCHITECTURE_FIELDS = (
    "dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "ffn_dim",
    "share_embeddings",
    "vocab_size",
    "max_context",
)
_TRAINING_FIELDS = (
    "batch_size",
    "train_tokens",
    "lr",
    "min_lr_fraction",
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "seed",
)


class BackboneConfig(BaseModel):
    """Where the backbone comes from and, when hilnas trains it, its architecture and training recipe.

    With ``checkpoint`` set, the architecture and training fields are ignored (the checkpoint defines
    the model) and only the corpus, ``seq_len``, ``eval_tokens`` and ``validation_fraction`` matter.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Architecture: a deep-and-thin MobileLLM (all layers alike, full attention, tied embeddings).
    dim: int = Field(192, ge=8)
    n_layers: int = Field(8, ge=1)
    n_heads: int = Field(6, ge=1)
    n_kv_heads: int = Field(2, ge=1)
    head_dim: int = Field(32, ge=2)
    ffn_dim: int = Field(512, ge=1)
    share_embeddings: bool = True
    vocab_size: int = Field(2048, ge=258, description="tokenizer size: 256 bytes, the separator and merges")
    max_context: int = Field(512, ge=8, description="longest sequence the model's RoPE tables cover")

    # Training: AdamW, linear warmup then cosine decay to min_lr_fraction * lr.
    seq_len: int = Field(128, ge=8, description="tokens per training and held-out window")
    batch_size: int = Field(16, ge=1)
    train_tokens: int = Field(600_000, ge=1, description="tokens the model is trained on (steps = this / batch)")
    lr: float = Field(3e-3, gt=0)
    min_lr_fraction: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0, description="applied to weight matrices and embeddings, not norms")
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
    threads: int = Field(2, ge=1, description="torch threads while building (speed only, so not in the key)")
    eval_tokens: int = Field(32_768, ge=1, description="held-out tokens the loss is measured on, at most")

    # Source.
    corpus: str | None = Field(None, description="a local .txt or .jsonl file; None: the stdlib corpus")
    checkpoint: str | None = Field(None, description="a local Hugging Face Llama checkpoint folder; None: train")
    validation_fraction: float = Field(0.05, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> BackboneConfig:
        if self.checkpoint is None:
            if self.seq_len > self.max_context:
                raise ValueError(f"seq_len {self.seq_len} is longer than max_context {self.max_context}")
            self.arch_config()  # raises when heads, KV heads and head_dim do not fit together
        return self

    def arch_config(self) -> ArchConfig:
        """The architecture hilnas trains (a checkpoint brings its own)."""
        layer = LayerConfig(n_heads=self.n_heads, n_kv_heads=self.n_kv_heads, ffn_dim=self.ffn_dim)
        return ArchConfig(
            vocab_size=self.vocab_size,
            dim=self.dim,
            head_dim=self.head_dim,
            layers=[layer] * self.n_layers,
            share_embeddings=self.share_embeddings,
            max_context=self.max_context,
        )

    def key(self) -> str:
        """Stable hash of everything that changes the backbone: the fields that apply and the data's content.

        Files are identified by their bytes, not their path, so a moved corpus or checkpoint still hits
        the cache and an edited one does not.
        """
        fields = ["seq_len", "eval_tokens", "validation_fraction"]
        if self.checkpoint is None:
            fields += [*_ARCHITECTURE_FIELDS, *_TRAINING_FIELDS]
        payload: dict[str, Any] = {name: getattr(self, name) for name in fields}
        payload["version"] = CACHE_VERSION
        if self.corpus:  # the suffix says how the bytes are read (.txt or .jsonl); the name does not matter
            corpus = Path(self.corpus)
            payload["corpus"] = _content_digest({corpus.suffix: corpus}, "corpus")
        else:
            payload["corpus"] = "stdlib-" + CorpusConfig(validation_fraction=self.validation_fraction).key()
        if self.checkpoint:
            files = _checkpoint_files(Path(self.checkpoint))
            payload["checkpoint"] = _content_digest({path.name: path for path in files}, "checkpoint")
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]


@dataclass
class Backbone:
    """A trained (or loaded) backbone, its tokenizer and the corpus encoded by that tokenizer."""

    model: MobileLLM  # in eval mode
    tokenizer: TextTokenizer
    train_tokens: np.ndarray  # the split's documents as one stream, separator between; uint16 for small vocabularies
    val_tokens: np.ndarray
    path: Path  # its cache folder; ``load_backbone(path)`` reloads it (e.g. in a Ray worker)
    key: str
    info: dict[str, Any]


def load_or_train_backbone(
    config: BackboneConfig, cache_dir: Path | None = None, show_progress: bool = True
) -> Backbone:
    """The cached backbone of ``config``, built (trained or read from the checkpoint) and cached on first use."""
    root = Path(cache_dir or get_settings().cache_dir) / "backbones"
    key = config.key()
    final = root / key
    if (final / INFO_FILE).is_file():
        return load_backbone(final)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with _progress(show_progress) as progress:
            model, tokenizer, streams, info = _build(config, root.parent, progress)
    finally:
        torch.set_num_threads(previous_threads)
    info["key"] = key
    _write_atomically(final, model, tokenizer, streams, info)
    return load_backbone(final)


def load_backbone(path: str | Path) -> Backbone:
    """The backbone cached in ``path`` (a folder ``load_or_train_backbone`` wrote)."""
    path = Path(path)
    if not (path / INFO_FILE).is_file():
        raise UserError(f"There is no backbone at {path} (it has no {INFO_FILE}).")
    info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
    model, tokenizer = load_hf_llama(path)
    train, val = np.load(path / "train_tokens.npy"), np.load(path / "val_tokens.npy")
    return Backbone(model, tokenizer, train, val, path, info["key"], info)


def _build(
    config: BackboneConfig, cache_dir: Path, progress: Progress
) -> tuple[MobileLLM, TextTokenizer, tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """Everything in memory (nothing touches the backbone cache), so a failure leaves no trace."""
    started = time.perf_counter()
    stage = progress.add_task("backbone: reading the checkpoint and corpus", total=None, loss="-")
    if config.checkpoint:  # first, so that a bad checkpoint fails before the corpus is read
        model, tokenizer = load_hf_llama(config.checkpoint)
        if config.seq_len > model.config.max_context:
            raise UserError(
                f"seq_len {config.seq_len} is longer than the checkpoint's {model.config.max_context} positions."
            )
    progress.update(stage, description="backbone: reading the corpus")
    corpus, label = _read_corpus(config, cache_dir)
    if not config.checkpoint:
        progress.update(stage, description="backbone: training the tokenizer")
        tokenizer = train_tokenizer(corpus.train, config.vocab_size)
    progress.update(stage, description="backbone: encoding the corpus")
    train, val = tokenizer.encode_documents(corpus.train), tokenizer.encode_documents(corpus.validation)
    _check_sizes(config, corpus, label, train, val)
    progress.remove_task(stage)
    windows = heldout_windows(val, config.seq_len, config.eval_tokens)

    training = None
    loss_before = None
    if not config.checkpoint:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = MobileLLM(config.arch_config())
        loss_before = heldout_loss(model, windows, config.batch_size)
        training = _train(model, train, config, progress)
    model.eval()
    info = {
        "version": CACHE_VERSION,
        "source": "checkpoint" if config.checkpoint else "trained",
        "config": config.model_dump(mode="json"),
        "params": model.config.n_params(),
        "corpus": {
            "name": label,
            **corpus.stats,
            "train_documents": len(corpus.train),
            "validation_documents": len(corpus.validation),
            "train_chars": sum(len(d) for d in corpus.train),
            "validation_chars": sum(len(d) for d in corpus.validation),
            "train_tokens": len(train),
            "validation_tokens": len(val),
        },
        "tokenizer": {"vocab_size": tokenizer.vocab_size, "separator": tokenizer.separator},
        "heldout": {
            "windows": len(windows),
            "tokens": int(windows.shape[0] * config.seq_len),
            "loss_before": loss_before,
            "loss": heldout_loss(model, windows, config.batch_size),
        },
        "training": training,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    return model, tokenizer, (train, val), info


def _read_corpus(config: BackboneConfig, cache_dir: Path) -> tuple[Corpus, str]:
    """The corpus and how error messages name it ("The corpus <label> has ...")."""
    if config.corpus:
        return read_local_corpus(config.corpus, config.validation_fraction), config.corpus
    corpus = build_stdlib_corpus(CorpusConfig(validation_fraction=config.validation_fraction), cache_dir)
    return corpus, "built from the standard library"


def _check_sizes(config: BackboneConfig, corpus: Corpus, label: str, train: np.ndarray, val: np.ndarray) -> None:
    """A corpus too small to train on (a few batches of distinct windows) or to measure held-out loss on."""
    needed = MIN_TRAIN_BATCHES * config.batch_size * (config.seq_len + 1)
    if len(train) < needed:
        raise UserError(
            f"The corpus {label} has {len(train)} training tokens, fewer than the {needed} that "
            f"{MIN_TRAIN_BATCHES} batches of {config.batch_size} x {config.seq_len + 1} tokens need."
        )
    if not corpus.validation:
        raise UserError(
            f"The corpus {label} has no validation documents: its {len(corpus.train)} documents all hashed into "
            f"the training split ({config.validation_fraction:.0%} go to validation), so add more documents."
        )
    if len(val) < config.seq_len + 1:
        raise UserError(
            f"The validation split of the corpus {label} has {len(val)} tokens, "
            f"fewer than one window of {config.seq_len + 1}."
        )


def random_windows(tokens: np.ndarray, count: int, length: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` windows of ``length`` tokens at random offsets of ``tokens``, (count, length) int64."""
    starts = rng.integers(0, len(tokens) - length + 1, size=count)
    return torch.from_numpy(np.stack([tokens[s : s + length] for s in starts]).astype(np.int64))


def heldout_windows(stream: np.ndarray, seq_len: int, max_tokens: int) -> torch.Tensor:
    """Windows of seq_len + 1 tokens predicting at most ``max_tokens`` targets, none predicted twice.

    The stream is cut into consecutive windows (overlapping by the one token that is input to the
    next); when there are more than needed, they are taken evenly spaced over the whole stream, so
    the sample covers every part of the corpus rather than the documents that happen to come first.
    """
    available = (len(stream) - 1) // seq_len
    chosen = np.unique(np.linspace(0, available - 1, min(available, max(1, max_tokens // seq_len))).round())
    rows = [stream[i * seq_len : i * seq_len + seq_len + 1] for i in chosen.astype(int)]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


@torch.no_grad()
def heldout_loss(model: MobileLLM, windows: torch.Tensor, batch_size: int) -> float:
    """Mean next-token cross-entropy (nats per token) over ``windows`` (N, seq_len + 1)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for batch in windows.split(batch_size):
        logits = model(batch[:, :-1])
        total += float(F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum"))
    model.train(was_training)
    return total / (windows.shape[0] * (windows.shape[1] - 1))


def _lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay from 1 to ``floor`` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _train(model: MobileLLM, stream: np.ndarray, config: BackboneConfig, progress: Progress) -> dict[str, Any]:
    """Next-token training on random windows of ``stream``; returns the loss curve and timings."""
    tokens_per_step = config.batch_size * config.seq_len
    steps = math.ceil(config.train_tokens / tokens_per_step)
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    vectors = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": config.weight_decay}, {"params": vectors, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, steps, config.warmup_steps, config.min_lr_fraction)
    )
    rng = np.random.default_rng(config.seed)
    log_every = max(1, steps // 100)
    curve, pending = [], []
    task = progress.add_task("backbone: training", total=steps, loss="  -  ")
    model.train()
    started = time.perf_counter()
    for step in range(1, steps + 1):
        batch = random_windows(stream, config.batch_size, config.seq_len + 1, rng)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        pending.append(float(loss.detach()))
        if step % log_every == 0 or step == steps:
            mean = float(np.mean(pending))
            curve.append({"step": step, "tokens": step * tokens_per_step, "loss": round(mean, 4)})
            pending = []
            progress.update(task, loss=f"{mean:.3f}")
        progress.advance(task)
    seconds = time.perf_counter() - started
    return {
        "steps": steps,
        "tokens_seen": steps * tokens_per_step,
        "epochs": round(steps * tokens_per_step / len(stream), 3),
        "seconds": round(seconds, 2),
        "tokens_per_second": round(steps * tokens_per_step / seconds, 1),
        "threads": config.threads,
        "loss_curve": curve,
    }


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _write_atomically(
    final: Path, model: MobileLLM, tokenizer: TextTokenizer, streams: tuple[np.ndarray, np.ndarray], info: dict
) -> None:
    """Write into a hidden staging folder, then rename it to ``final`` in one step.

    When another process published the same key first, its folder is kept and ours discarded.
    """
    staging = final.parent / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir(parents=True)
    try:
        save_hf_llama(model, tokenizer, staging)
        np.save(staging / "train_tokens.npy", streams[0])
        np.save(staging / "val_tokens.npy", streams[1])
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        try:
            staging.rename(final)
        except OSError:
            if not (final / INFO_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _checkpoint_files(directory: Path) -> list[Path]:
    """The files that define a checkpoint (config, tokenizer, weights); a missing folder is a ``UserError``."""
    if not directory.is_dir():
        raise UserError(f"There is no checkpoint folder at {directory}.")
    names = ("config.json", "tokenizer.json", "*.safetensors", "*.bin", "*.index.json")
    return sorted({path for name in names for path in directory.glob(name)})


def _content_digest(files: dict[str, Path], what: str) -> str:
    """sha256 of each file's label and bytes (read in 1 MiB blocks), in label order."""
    digest = hashlib.sha256()
    for label, path in sorted(files.items()):
        if not path.is_file():
            raise UserError(f"There is no {what} file at {path}.")
        digest.update(label.encode())
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
