"""GPTQ (Frantar et al., 2022): quantize weight columns one at a time, pushing each column's rounding
error onto the columns not yet quantized through the inverse Hessian of the layer's inputs.

Hessians come from one pass of the calibration set through the rotated model with activation
quantization on and weights still in floating point (every layer at once, not layer by layer with
the earlier layers already quantized, as the paper does; cheaper, slightly less exact). Quantization
is the same symmetric per-output-channel grid as RTN. Written out because no maintained library
runs GPTQ on a plain PyTorch CPU module.
"""

from __future__ import annotations

import torch
from torch import Tensor

from search.families.quant_rotation.qmodel import QuantizedModel
from search.families.quant_rotation.quantizers import weight_scale

DAMPING = 0.01  # fraction of the mean Hessian diagonal added for numerical stability


def gptq_quantize(weight: Tensor, hessian: Tensor, bits: int, clip_search: bool = False) -> Tensor:
    """The GPTQ-quantized (dequantized, same dtype) copy of ``weight`` (out, in) given ``hessian`` (in, in)."""
    w = weight.double().clone()
    h = hessian.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += DAMPING * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    # Upper Cholesky factor of H^-1: row i holds how column i's error spreads to later columns.
    inverse_factor = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    scale = weight_scale(w, bits, clip_search)
    qmax = 2 ** (bits - 1) - 1
    for i in range(w.shape[1]):
        column = w[:, i]
        quantized = torch.clamp(torch.round(column / scale[:, 0]), -qmax - 1, qmax) * scale[:, 0]
        error = (column - quantized) / inverse_factor[i, i]
        w[:, i] = quantized
        w[:, i + 1 :] -= error[:, None] * inverse_factor[i, i + 1 :][None, :]
    return w.to(weight.dtype)


@torch.no_grad()
def apply_gptq(model: QuantizedModel, calibration: Tensor, batch_size: int = 8) -> None:
    """Replace every block linear's weight by its GPTQ quantization and switch off its RTN."""
    linears = model.quant_linears()
    hessians = {
        layer.name: torch.zeros(layer.weight.shape[1], layer.weight.shape[1], dtype=torch.float64) for layer in linears
    }

    def accumulate(name: str, x: Tensor) -> None:
        rows = x.reshape(-1, x.shape[-1]).double()
        hessians[name] += 2 * rows.T @ rows

    for layer in linears:
        layer.weight_bits, layer.observer = None, accumulate  # floating-point weights while observing
    for start in range(0, len(calibration), batch_size):
        model(calibration[start : start + batch_size])
    for layer in linears:
        layer.observer = None
        layer.weight.copy_(
            gptq_quantize(layer.weight, hessians[layer.name], model.spec.w_bits, model.spec.w_clip_search)
        )
