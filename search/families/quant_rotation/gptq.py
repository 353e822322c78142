"""GPTQ (Frantar et al., 2022): quantize weight columns one at a time, pushing each column's rounding
error onto the columns not yet quantized through the inverse Hessian of the layer's inputs.

As in the paper's released recipe (and QuaRot's and SpinQuant's use of it): columns go in the order of
their Hessian diagonal, largest first ("act order": the inputs that carry the most energy are rounded
while the most columns remain to absorb their error), and layers are quantized in the order the network
runs them, each group of linears reading the same input (q/k/v, o, gate/up, down) seeing the outputs of
the layers already quantized, so each one corrects what came before it. Hessians come from the
calibration set through the rotated model with activation quantization on (a group's linears read the
same input, so they share one). Quantization is the same symmetric per-output-channel grid as RTN.
Written out because no maintained library runs GPTQ on a plain PyTorch CPU module.
"""

from __future__ import annotations

import torch
from torch import Tensor

from search.families.quant_rotation.qmodel import QuantizedModel, QuantLinear
from search.families.quant_rotation.quantizers import weight_scale

DAMPING = 0.01  # fraction of the mean Hessian diagonal added for numerical stability
#: Linears of a block that read the same input, in the order the block runs them.
INPUT_GROUPS = (
    ("attn.q_proj", "attn.k_proj", "attn.v_proj"),
    ("attn.o_proj",),
    ("ffn.gate_proj", "ffn.up_proj"),
    ("ffn.down_proj",),
)


def gptq_quantize(
    weight: Tensor, hessian: Tensor, bits: int, clip_search: bool = False, act_order: bool = True
) -> Tensor:
    """The GPTQ-quantized (dequantized, same dtype) copy of ``weight`` (out, in) given ``hessian`` (in, in);
    columns in the order of the Hessian's diagonal, largest first (``act_order``), or as they stand."""
    w = weight.double().clone()
    h = hessian.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    scale = weight_scale(w, bits, clip_search)[:, 0]  # from the whole row, before any column moves
    order = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(h.shape[0])
    w, h = w[:, order], h[order][:, order]
    h += DAMPING * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    # Upper Cholesky factor of H^-1: row i holds how column i's error spreads to later columns.
    inverse_factor = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    qmax = 2 ** (bits - 1) - 1
    for i in range(w.shape[1]):
        column = w[:, i]
        quantized = torch.clamp(torch.round(column / scale), -qmax - 1, qmax) * scale
        error = (column - quantized) / inverse_factor[i, i]
        w[:, i] = quantized
        w[:, i + 1 :] -= error[:, None] * inverse_factor[i, i + 1 :][None, :]
    return w[:, torch.argsort(order)].to(weight.dtype)


@torch.no_grad()
def apply_gptq(model: QuantizedModel, calibration: Tensor, batch_size: int = 8) -> None:
    """Replace every block linear's weight by its GPTQ quantization and switch off its RTN.

    Blocks go in execution order on the calibration set's hidden states, kept between blocks (so each block
    costs a pass of itself per input group it has and one to carry the states on). A shared block that
    runs more than once is quantized on its first run's inputs."""
    inner = model.model
    positions = calibration.shape[1]
    cos, sin = inner.rope_cos[:positions], inner.rope_sin[:positions]
    for layer in model.quant_linears():
        layer.weight_bits = None  # floating point until its turn comes
    hidden = [inner.tok_embeddings(batch) for batch in calibration.split(batch_size)]
    quantized: set[int] = set()
    spec = model.spec
    for block in inner.executed_blocks():
        if id(block) not in quantized:
            quantized.add(id(block))
            for group in INPUT_GROUPS:
                layers = [m for path in group if isinstance(m := _find(block, path), QuantLinear)]
                if layers:
                    hessian = _input_hessian(layers[0], block, hidden, (cos, sin))
                    for layer in layers:
                        layer.weight.copy_(gptq_quantize(layer.weight, hessian, spec.w_bits, spec.w_clip_search))
        hidden = [block(x, cos, sin, None)[0] for x in hidden]


def _find(block: torch.nn.Module, path: str) -> torch.nn.Module | None:
    """The submodule at ``path`` ("attn.q_proj"), None in a block without it (a skipped attention)."""
    try:
        return block.get_submodule(path)
    except AttributeError:
        return None


def _input_hessian(
    layer: QuantLinear, block: torch.nn.Module, hidden: list[Tensor], rope: tuple[Tensor, Tensor]
) -> Tensor:
    """2 X^T X over the (activation-quantized) inputs ``layer`` reads while ``block`` runs on ``hidden``."""
    width = layer.weight.shape[1]
    hessian = torch.zeros(width, width, dtype=torch.float64)

    def accumulate(_name: str, x: Tensor) -> None:
        rows = x.reshape(-1, width).double()
        hessian.add_(2 * rows.T @ rows)

    layer.observer = accumulate
    try:
        for x in hidden:
            block(x, *rope, None)
    finally:
        layer.observer = None
    return hessian
