"""Training tiny byte-level LMs for scaling sweeps: one run yields losses at several token counts.

The model is the MobileLLM-style decoder of ``search.families.mobilellm_flash`` with a vocabulary of
256 byte values (no tokenizer to train; one token is one UTF-8 byte). A run trains at a constant
learning rate after a short warmup; at each requested token count D it branches off a copy of model
and optimizer, cools the learning rate linearly to zero over the last ``cooldown_fraction`` of D
(so the branch has seen exactly D tokens) and evaluates it (Hägele et al., 2024: constant LR with
short cooldowns matches a cosine schedule per budget at a fraction of the cost). The main run carries
on from the branch point, so one run costs about D_max tokens plus the cooldowns.

Learning-rate rule: ``lr = lr_ref * (dim_ref / dim) ** lr_exponent`` (Adam learning rates shrink with
width; by default lr_ref = 1e-2 at dim_ref = 64 with exponent 0.5, picked from a short check of
3e-3, 1e-2 and 3e-2 at dims 16 and 48 over 262K tokens, where 3e-2 diverged at dim 48). The constants are spec settings,
not tuned by the sweep itself.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig

BYTE_VOCAB = 256
HEAD_DIM = 16


class ModelSize(BaseModel):
    """A tiny LM: width and depth; heads are width / 16, one KV head, SwiGLU width 8/3 x dim."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dim: int = Field(ge=HEAD_DIM, multiple_of=HEAD_DIM)
    layers: int = Field(ge=1, le=32)


class TrainSettings(BaseModel):
    """How every run of a sweep trains (shared so that runs differ only in size, data and budget)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seq_len: int = Field(64, ge=8, le=1024)
    batch_size: int = Field(16, ge=1)
    warmup_steps: int = Field(20, ge=0)
    cooldown_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    lr_ref: float = Field(1e-2, gt=0.0)
    dim_ref: int = Field(64, ge=1)
    lr_exponent: float = Field(0.5, ge=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    eval_windows: int = Field(128, ge=1, description="validation windows of seq_len + 1 bytes")
    threads: int = Field(1, ge=1, description="torch threads per run")

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size

    def lr_for(self, size: ModelSize) -> float:
        return self.lr_ref * (self.dim_ref / size.dim) ** self.lr_exponent


def arch_config(size: ModelSize, seq_len: int) -> ArchConfig:
    ffn = max(8, round(size.dim * 8 / 3 / 8) * 8)
    layer = LayerConfig(attention="full", n_heads=size.dim // HEAD_DIM, n_kv_heads=1, ffn_dim=ffn)
    return ArchConfig(
        vocab_size=BYTE_VOCAB, dim=size.dim, head_dim=HEAD_DIM, layers=[layer] * size.layers, max_context=seq_len
    )


def n_params(size: ModelSize, seq_len: int = 64) -> int:
    """Parameters of the model, embeddings included (the tied byte embedding is a large share at this scale)."""
    return arch_config(size, seq_len).n_params()


@dataclass(frozen=True)
class LossPoint:
    tokens: int
    loss: float  # validation loss (nats per byte) after the cooldown branch
    train_loss: float  # mean training loss over the branch's last steps


def _batch(stream: np.ndarray, settings: TrainSettings, rng: np.random.Generator) -> torch.Tensor:
    starts = rng.integers(0, len(stream) - settings.seq_len - 1, size=settings.batch_size)
    rows = np.stack([stream[s : s + settings.seq_len + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(rows)


def _step(model: MobileLLM, optimizer: torch.optim.Optimizer, batch: torch.Tensor, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = model(batch[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, BYTE_VOCAB), batch[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate_loss(model: MobileLLM, windows: torch.Tensor) -> float:
    model.eval()
    logits = model(windows[:, :-1])
    loss = float(F.cross_entropy(logits.reshape(-1, BYTE_VOCAB), windows[:, 1:].reshape(-1)))
    model.train()
    return loss


def validation_windows(validation: np.ndarray, settings: TrainSettings, seed: int = 12345) -> torch.Tensor:
    """Fixed validation windows (the same for every run of a sweep, whatever data it trains on)."""
    rng = np.random.default_rng(seed)
    return _batch(validation, settings.model_copy(update={"batch_size": settings.eval_windows}), rng)


def train_with_cooldowns(
    size: ModelSize,
    stream: np.ndarray,
    validation: np.ndarray,
    checkpoints: list[int],
    settings: TrainSettings,
    seed: int = 0,
) -> tuple[list[LossPoint], MobileLLM]:
    """Train on random windows of ``stream``; validation loss at each token count in ``checkpoints``.

    Returns the points and the model of the last cooldown branch (trained on max(checkpoints) tokens).
    """
    torch.set_num_threads(settings.threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MobileLLM(arch_config(size, settings.seq_len))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=settings.weight_decay)
    peak = settings.lr_for(size)
    windows = validation_windows(validation, settings)
    tps = settings.tokens_per_step
    targets = sorted({max(1, math.ceil(c / tps)) for c in checkpoints})  # in steps
    step, points, final = 0, [], model
    for target in targets:
        cooldown = max(1, round(settings.cooldown_fraction * target))
        branch_at = target - cooldown
        while step < branch_at:
            _step(
                model,
                optimizer,
                _batch(stream, settings, rng),
                peak * min(1.0, (step + 1) / max(1, settings.warmup_steps)),
            )
            step += 1
        branch = copy.deepcopy(model)
        branch_optimizer = _rebind(optimizer, branch)
        branch_rng = np.random.default_rng([seed, target])
        losses = []
        for i in range(cooldown):
            warm = min(1.0, (branch_at + i + 1) / max(1, settings.warmup_steps))
            lr = peak * warm * (1.0 - i / cooldown)
            losses.append(_step(branch, branch_optimizer, _batch(stream, settings, branch_rng), lr))
        tail = losses[-max(1, len(losses) // 4) :]
        points.append(LossPoint(target * tps, evaluate_loss(branch, windows), float(np.mean(tail))))
        final = branch
    return points, final


def _rebind(optimizer: torch.optim.Optimizer, branch: MobileLLM) -> torch.optim.Optimizer:
    """A copy of ``optimizer`` (moments included) that updates ``branch``'s parameters."""
    clone = torch.optim.AdamW(branch.parameters(), lr=0.0, weight_decay=optimizer.defaults["weight_decay"])
    clone.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return clone
