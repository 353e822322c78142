"""Learned rotations (SpinQuant): R1 and the per-layer R2 optimised through the quantized network.

R1 and every R2 are plain orthogonal float64 tensors moved by Cayley SGD with momentum
(``stiefel.CayleySGD``), so every iterate is a rotation and the full-precision function never
changes; only how well it quantizes does. They start from the recipe's seeded random Hadamard.
Rounding in the weight, activation and KV quantizers passes gradients straight through (STE). The
loss is SpinQuant's: next-token cross-entropy of the fake-quantized network, on mini-batches of the
calibration windows (reshuffled each pass); the learning rate decays linearly to zero, as in
SpinQuant's training loop, so the last iterate settles instead of stopping mid-stride. Online R3/R4
stay fixed Hadamards.

The defaults (``CAYLEY_LR``, momentum 0.9 as in Li et al.; steps and calibration windows in
``pipeline.Recipe`` and the benchmark) were chosen on train-stream text only: fit on calibration
windows, compare quantized perplexity on other train windows; the held-out stream was never used.
A KL-to-full-precision loss lowered the quantization KL more but the perplexity less, so
cross-entropy stayed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from search.families.mobilellm_flash.model import MobileLLM
from search.families.quant_rotation.qmodel import QuantizedModel
from search.families.quant_rotation.quantizers import QuantSpec
from search.families.quant_rotation.stiefel import CayleySGD
from search.families.quant_rotation.transform import Rotations, rotated_weights

CAYLEY_LR = 0.3
CAYLEY_MOMENTUM = 0.9


@dataclass
class LearnedRotations:
    rotations: Rotations
    losses: list[float]  # loss of each step's mini-batch
    calibration_loss: tuple[float, float]  # on the whole calibration set, before and after
    seconds: float  # wall time of the optimisation steps (one-off setup and the two full-set losses excluded)


def learn_rotations(
    folded: MobileLLM,
    start: Rotations,
    spec: QuantSpec,
    calibration: Tensor,
    steps: int,
    lr: float = CAYLEY_LR,
    seed: int = 0,
    batch_size: int = 8,
    momentum: float = CAYLEY_MOMENTUM,
) -> LearnedRotations:
    """R1/R2 after ``steps`` Cayley SGD steps from ``start`` (R3/R4 kept), in ``start``'s dtype; without R1 and
    R2 there is nothing to learn. ``seed`` draws the mini-batches."""
    dtype = folded.tok_embeddings.weight.dtype
    r1 = start.r1.detach().double().requires_grad_(True) if start.r1 is not None else None
    r2 = {i: m.detach().double().requires_grad_(True) for i, m in start.r2.items()}
    params = ([r1] if r1 is not None else []) + list(r2.values())
    if not params:
        return LearnedRotations(start, [], (float("nan"), float("nan")), 0.0)
    quantized = QuantizedModel(folded, start, spec)
    optimizer = CayleySGD(params, lr=lr, momentum=momentum)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    batches = _minibatches(len(calibration), batch_size, seed)

    def current() -> Rotations:
        return Rotations(
            r1=r1.to(dtype) if r1 is not None else None,
            r2={i: m.to(dtype) for i, m in r2.items()},
            r3=start.r3,
            r4=start.r4,
        )

    def loss_on(batch: Tensor) -> Tensor:
        logits = quantized.forward_with(rotated_weights(folded, current()), batch[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    def calibration_loss() -> float:
        with torch.no_grad():
            return sum(loss_on(batch).item() * len(batch) for batch in calibration.split(batch_size)) / len(calibration)

    before = calibration_loss()
    losses: list[float] = []
    started = time.perf_counter()
    for _ in range(steps):
        loss = loss_on(calibration[next(batches)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - started
    learned = Rotations(
        r1=r1.detach().to(start.r1.dtype) if r1 is not None else None,
        r2={i: m.detach().to(start.r2[i].dtype) for i, m in r2.items()},
        r3=start.r3,
        r4=start.r4,
    )
    return LearnedRotations(learned, losses, (before, calibration_loss()), seconds)


def _minibatches(count: int, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Indices of ``batch_size`` calibration windows at a time, reshuffled every pass over all ``count``."""
    generator = torch.Generator().manual_seed(seed)
    size = min(batch_size, count)
    while True:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - size + 1, size):
            yield order[start : start + size]
