"""Fake quantization (quantize then dequantize in floating point), with straight-through rounding.

Nothing here produces integer kernels: the numbers show what a W/A/KV bit setting does to quality,
not how fast it runs. Conventions (as in SpinQuant/QuaRot): weights per output channel, symmetric;
activations per token, asymmetric, min/max scaled by a clipping ratio; the KV cache per token and
head in groups of ``kv_group`` features, asymmetric. 16 bits means "left in floating point".
Weight grids may shrink each row's range to the ratio with the least squared rounding error
(``w_clip_search``, QuaRot's ``--w_clip``): outlying weights are clipped when that helps the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from hilnas.errors import UserError

FULL_PRECISION_BITS = 16
_SETTING = re.compile(r"^W(\d+)A(\d+)(?:KV(\d+))?$", re.IGNORECASE)


def check_bits(bits: int, what: str) -> None:
    if not 2 <= bits <= FULL_PRECISION_BITS:
        raise UserError(f"{what} bit width {bits} is outside the supported range 2-16.")


def check_clip(ratio: float, what: str) -> None:
    if not 0.0 < ratio <= 1.0:
        raise UserError(f"The {what} clipping ratio {ratio} must lie in (0, 1].")


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths and clipping ratios of one setting, e.g. W4A4KV4 with activations clipped to 0.9."""

    w_bits: int = FULL_PRECISION_BITS
    a_bits: int = FULL_PRECISION_BITS
    kv_bits: int = FULL_PRECISION_BITS
    a_clip: float = 1.0
    kv_clip: float = 1.0
    kv_group: int | None = None  # features per KV quantization group; None = one group per head
    w_clip_search: bool = False  # per-row weight range shrunk to the least-squared-error ratio

    def __post_init__(self) -> None:
        check_bits(self.w_bits, "The weight")
        check_bits(self.a_bits, "The activation")
        check_bits(self.kv_bits, "The KV-cache")
        check_clip(self.a_clip, "activation")
        check_clip(self.kv_clip, "KV-cache")
        if self.kv_group is not None and self.kv_group < 1:
            raise UserError(f"The KV group size {self.kv_group} must be positive.")

    @classmethod
    def parse(
        cls,
        setting: str,
        a_clip: float = 1.0,
        kv_clip: float = 1.0,
        kv_group: int | None = None,
        w_clip_search: bool = False,
    ) -> QuantSpec:
        """``W4A4KV4``, ``W4A8KV8``, ``W4A16`` (no KV part: the cache stays in floating point)."""
        match = _SETTING.match(setting.strip())
        if match is None:
            raise UserError(f"Cannot read the bit setting {setting!r}; write it like W4A4KV4 or W4A16.")
        w, a, kv = (int(g) if g is not None else FULL_PRECISION_BITS for g in match.groups())
        return cls(w, a, kv, a_clip, kv_clip, kv_group, w_clip_search)

    @property
    def label(self) -> str:
        kv = f"KV{self.kv_bits}" if self.kv_bits < FULL_PRECISION_BITS else ""
        return f"W{self.w_bits}A{self.a_bits}{kv}"


def round_ste(x: Tensor) -> Tensor:
    """Round forward, identity backward (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


#: Range ratios tried by the weight clipping search, full range first.
W_CLIP_RATIOS = tuple(1.0 - 0.02 * i for i in range(21))


def quantize_weight(weight: Tensor, bits: int, clip_search: bool = False) -> Tensor:
    """Symmetric per-output-channel RTN: each row on its own grid of 2^bits levels."""
    if bits >= FULL_PRECISION_BITS:
        return weight
    scale = weight_scale(weight, bits, clip_search)
    qmax = 2 ** (bits - 1) - 1
    return torch.clamp(round_ste(weight / scale), -qmax - 1, qmax) * scale


def weight_scale(weight: Tensor, bits: int, clip_search: bool = False) -> Tensor:
    """Step size per output row (shape (out, 1)); shared by RTN and GPTQ. With ``clip_search`` each row's
    range is its max |w| times the ratio of ``W_CLIP_RATIOS`` that rounds the row with the least squared error
    (chosen without gradients; the scale stays differentiable through max |w|)."""
    qmax = 2 ** (bits - 1) - 1
    amax = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-8)
    if not clip_search:
        return amax / qmax
    with torch.no_grad():
        best_ratio = torch.ones_like(amax)
        best_error = torch.full_like(amax, float("inf"))
        for ratio in W_CLIP_RATIOS:
            scale = amax * ratio / qmax
            rounded = torch.clamp(torch.round(weight / scale), -qmax - 1, qmax) * scale
            error = (rounded - weight).pow(2).sum(dim=1, keepdim=True)
            better = error < best_error
            best_error = torch.where(better, error, best_error)
            best_ratio = torch.where(better, torch.full_like(amax, ratio), best_ratio)
    return amax * best_ratio / qmax


def quantize_asymmetric(x: Tensor, bits: int, clip: float = 1.0) -> Tensor:
    """Asymmetric min/max fake quantization of each row of the last dimension, range scaled by ``clip``."""
    if bits >= FULL_PRECISION_BITS:
        return x
    levels = 2**bits - 1
    high = x.amax(dim=-1, keepdim=True).clamp(min=0) * clip
    low = x.amin(dim=-1, keepdim=True).clamp(max=0) * clip
    scale = ((high - low) / levels).clamp(min=1e-8)
    zero = torch.round(-low / scale).detach()
    q = torch.clamp(round_ste(x / scale) + zero, 0, levels)
    return (q - zero) * scale


def quantize_kv(x: Tensor, bits: int, group: int | None, clip: float = 1.0) -> Tensor:
    """Keys or values (B, heads, T, D): each token's head split into groups of ``group`` features."""
    if bits >= FULL_PRECISION_BITS:
        return x
    d = x.shape[-1]
    group = group or d
    if d % group:
        raise UserError(f"The KV group size {group} does not divide the head dimension {d}.")
    grouped = x.reshape(*x.shape[:-1], d // group, group)
    return quantize_asymmetric(grouped, bits, clip).reshape(x.shape)
