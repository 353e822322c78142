"""Short continued pretraining of a pruned candidate with logit distillation from the frozen backbone.

Every candidate gets the same recipe and the same token budget, so their held-out losses compare
architectures rather than training luck. The loss mixes the KL divergence to the teacher's softened
next-token distribution (weight ``alpha``) with ordinary cross-entropy on the text (``1 - alpha``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hilnas.errors import UserError
from search.families.mobilellm_flash.backbone import heldout_loss as mean_heldout_loss
from search.families.mobilellm_flash.backbone import heldout_windows, random_windows
from search.families.mobilellm_flash.model import MobileLLM

#: Called after every optimiser step with (step, total steps, training loss).
ProgressCallback = Callable[[int, int, float], None]


def distill(
    student: MobileLLM,
    teacher: MobileLLM,
    train_tokens: np.ndarray,
    budget_tokens: int,
    *,
    seq_len: int = 128,
    batch_size: int = 8,
    lr: float = 2e-3,
    temperature: float = 1.0,
    alpha: float = 0.5,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Train ``student`` in place on ``budget_tokens`` tokens of random windows of ``train_tokens``.

    AdamW with a one-cycle schedule (warm-up, cosine decay), gradients clipped at norm 1. Returns the
    tokens and steps actually trained, the seconds taken and the mean training loss of the last tenth of
    the steps.
    """
    step_tokens = seq_len * batch_size
    if budget_tokens < step_tokens:
        raise UserError(f"The distillation budget of {budget_tokens} tokens is less than one batch ({step_tokens}).")
    if len(train_tokens) < max(budget_tokens, seq_len + 1):
        raise UserError(
            f"The training corpus holds {len(train_tokens)} tokens, fewer than the distillation budget of "
            f"{budget_tokens} tokens."
        )
    steps = budget_tokens // step_tokens
    rng = np.random.default_rng(seed)
    teacher.eval()
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.1, cycle_momentum=False
    )
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(steps):
        batch = random_windows(train_tokens, batch_size, seq_len + 1, rng)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        with torch.no_grad():
            teacher_logits = teacher(inputs)
        loss = distillation_loss(student(inputs), teacher_logits, targets, temperature, alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, steps, losses[-1])
    student.eval()
    tail = losses[-max(1, steps // 10) :]
    return {
        "tokens": steps * step_tokens,
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "final_train_loss": float(np.mean(tail)),
    }


def distillation_loss(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float, alpha: float
) -> Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy, both per token."""
    vocab = student_logits.shape[-1]
    student_flat, teacher_flat = student_logits.reshape(-1, vocab), teacher_logits.reshape(-1, vocab)
    kl = F.kl_div(
        F.log_softmax(student_flat / temperature, dim=-1),
        F.log_softmax(teacher_flat / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    cross_entropy = F.cross_entropy(student_flat, targets.reshape(-1))
    return alpha * temperature**2 * kl + (1 - alpha) * cross_entropy


def heldout_loss(model: MobileLLM, val_tokens: np.ndarray, seq_len: int = 128, windows: int = 64) -> float:
    """Mean next-token cross-entropy (nats) on the first ``windows`` windows of ``val_tokens``.

    The windows are the backbone's held-out windows (consecutive, each target token counted once), so
    every candidate is scored on the same text and the backbone's own loss is comparable.
    """
    batch = heldout_windows(val_tokens, seq_len, windows * seq_len)
    if len(batch) < windows:
        raise UserError(
            f"The validation text holds {len(val_tokens)} tokens, too few for {windows} windows of {seq_len} tokens."
        )
    return mean_heldout_loss(model, batch, batch_size=16)
