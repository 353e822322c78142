"""Learned rotations (SpinQuant): R1 and the per-layer R2 optimised through the quantized network.

Each rotation is the weight of a bias-free ``nn.Linear`` under
``torch.nn.utils.parametrizations.orthogonal(orthogonal_map="cayley")``: the matrix is
base @ cayley(A) with A skew-symmetric, so plain SGD on A moves along the Stiefel manifold and every
iterate is exactly orthogonal (the Cayley-map trivialization, not Li et al.'s Cayley SGD with its
momentum retraction). The base is the random Hadamard the recipe starts from. Rounding in the
weight, activation and KV quantizers passes gradients straight through (STE); the loss is the
next-token cross-entropy on the calibration set; online R3/R4 stay fixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

from search.families.mobilellm_flash.model import MobileLLM
from search.families.quant_rotation.qmodel import QuantizedModel
from search.families.quant_rotation.quantizers import QuantSpec
from search.families.quant_rotation.transform import Rotations, rotated_weights


@dataclass
class LearnedRotations:
    rotations: Rotations
    losses: list[float]  # loss of each step's mini-batch
    calibration_loss: tuple[float, float]  # on the whole calibration set, before and after
    seconds: float  # wall time of the optimisation steps (one-off imports and setup excluded)


def _orthogonal_parameter(start: Tensor) -> nn.Linear:
    holder = nn.Linear(start.shape[0], start.shape[0], bias=False, dtype=start.dtype)
    orthogonal(holder, "weight", orthogonal_map="cayley")
    holder.weight = start.detach().clone()  # sets the base; the generator A starts at zero
    return holder


def learn_rotations(
    folded: MobileLLM,
    start: Rotations,
    spec: QuantSpec,
    calibration: Tensor,
    steps: int,
    lr: float,
    seed: int,
    batch_size: int = 8,
) -> LearnedRotations:
    """R1/R2 after ``steps`` SGD steps from ``start`` (R3/R4 kept); without R1 and R2 there is nothing to learn."""
    quantized = QuantizedModel(folded, start, spec)
    r1 = _orthogonal_parameter(start.r1) if start.r1 is not None else None
    r2 = nn.ModuleDict({str(i): _orthogonal_parameter(m) for i, m in start.r2.items()})
    params = [p for module in ([r1] if r1 is not None else []) + list(r2.values()) for p in module.parameters()]
    if not params:
        return LearnedRotations(start, [], (float("nan"), float("nan")), 0.0)
    optimizer = torch.optim.SGD(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []

    def loss_on(batch: Tensor) -> Tensor:
        current = Rotations(
            r1=r1.weight if r1 is not None else None,
            r2={int(i): m.weight for i, m in r2.items()},
            r3=start.r3,
            r4=start.r4,
        )
        logits = quantized.forward_with(rotated_weights(folded, current), batch[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    with torch.no_grad():
        before = loss_on(calibration).item()
    started = time.perf_counter()
    for _ in range(steps):
        loss = loss_on(calibration[torch.randint(0, len(calibration), (batch_size,), generator=generator)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - started
    with torch.no_grad():
        after = loss_on(calibration).item()
        learned = Rotations(
            r1=r1.weight.detach().clone() if r1 is not None else None,
            r2={int(i): m.weight.detach().clone() for i, m in r2.items()},
            r3=start.r3,
            r4=start.r4,
        )
    return LearnedRotations(learned, losses, (before, after), seconds)
