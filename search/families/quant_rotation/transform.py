"""Rotations that leave the full-precision function unchanged, merged into the weights.

Notation: ``Linear`` computes y = x W^T with W of shape (out, in). A residual-stream rotation R1
turns every hidden state x into x R1; a layer reading the stream then needs W R1 (input side),
a layer writing it R1^T W (output side). RMSNorm commutes with R1 only without its per-feature
scale, so the scales are folded into the following linears first (``fold_norms``); the final
norm's scale goes into the output head, which is why the head is untied from the embedding.
R2 (per attention layer, head_dim x head_dim) rotates each V head and un-rotates the matching
o_proj input columns; R4 (ffn_dim x ffn_dim) is applied online before down_proj
(x -> x R4) and down_proj absorbs the inverse (W -> W R4, so x R4 (W R4)^T = x W^T); R3 is purely
online (queries and keys after RoPE, see qmodel).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from hilnas.errors import UserError
from search.families.mobilellm_flash.model import MobileLLM
from search.families.quant_rotation.rotation import check_orthogonal


@dataclass
class Rotations:
    """The rotations of one recipe; None (or a missing layer) means "not applied"."""

    r1: Tensor | None = None
    r2: dict[int, Tensor] = field(default_factory=dict)  # block index -> (head_dim, head_dim)
    r3: Tensor | None = None  # (head_dim, head_dim), online
    r4: dict[int, Tensor] = field(default_factory=dict)  # block index -> (ffn_dim, ffn_dim), online


def require_llama_style(model: object) -> MobileLLM:
    """The model if it is a Llama-style decoder hilnas can rotate; otherwise one clear sentence."""
    if not isinstance(model, MobileLLM):
        raise UserError(
            f"The model ({type(model).__name__}) is not a Llama-style decoder: rotations need hilnas's "
            "MobileLLM (RMSNorm, q/k/v/o attention and gate/up/down SwiGLU projections)."
        )
    return model


def check_rotations(model: MobileLLM, rotations: Rotations) -> None:
    """Every given rotation must be orthogonal and sized for the place it goes (else a ``UserError``)."""
    config = model.config
    n_blocks = len(model.blocks)
    if any(not 0 <= i < n_blocks or not model.blocks[i].has_attention for i in rotations.r2):
        raise UserError("R2 is given for a block that does not exist or has no attention.")
    if any(not 0 <= i < n_blocks for i in rotations.r4):
        raise UserError("R4 is given for a block that does not exist.")
    expected: list[tuple[str, Tensor | None, int]] = [
        ("R1", rotations.r1, config.dim),
        ("R3", rotations.r3, config.head_dim),
    ]
    expected += [(f"R2 of block {i}", r, config.head_dim) for i, r in rotations.r2.items()]
    expected += [(f"R4 of block {i}", r, model.blocks[i].ffn.down_proj.in_features) for i, r in rotations.r4.items()]
    for name, matrix, size in expected:
        if matrix is None:
            continue
        check_orthogonal(matrix, name)
        if matrix.shape[0] != size:
            raise UserError(f"{name} is {matrix.shape[0]} x {matrix.shape[0]}, but its place needs {size} x {size}.")


def fold_norms(model: MobileLLM, dtype: torch.dtype = torch.float32) -> MobileLLM:
    """A copy in ``dtype`` with RMSNorm scales multiplied into the linears they feed and the head untied."""
    folded = copy.deepcopy(require_llama_style(model)).to(dtype)
    with torch.no_grad():
        folded.output.weight = nn.Parameter(folded.output.weight.detach().clone())
        for block in folded.blocks:
            if block.has_attention:
                _fold(block.attn_norm, [block.attn.q_proj, block.attn.k_proj, block.attn.v_proj])
            _fold(block.ffn_norm, [block.ffn.gate_proj, block.ffn.up_proj])
        _fold(folded.norm, [folded.output])
    return folded


def _fold(norm: nn.Module, readers: list[nn.Linear]) -> None:
    for linear in readers:
        linear.weight.mul_(norm.weight[None, :])
    norm.weight.fill_(1.0)


def rotated_weights(model: MobileLLM, rotations: Rotations) -> dict[str, Tensor]:
    """Every parameter of the (folded) ``model`` with the rotations merged; differentiable in the rotations."""
    weights = {name: p.detach() for name, p in model.named_parameters()}
    out = dict(weights)
    r1 = rotations.r1

    def reads(name: str) -> None:
        if r1 is not None:
            out[name] = out[name] @ r1

    def writes(name: str) -> None:
        if r1 is not None:
            out[name] = r1.T @ out[name]

    if r1 is not None:
        out["tok_embeddings.weight"] = weights["tok_embeddings.weight"] @ r1
        out["output.weight"] = weights["output.weight"] @ r1
    for i, block in enumerate(model.blocks):
        prefix = f"blocks.{i}."
        if block.has_attention:
            attn = prefix + "attn."
            for proj in ("q_proj", "k_proj", "v_proj"):
                reads(attn + proj + ".weight")
            if i in rotations.r2:
                r2, d = rotations.r2[i], block.attn.head_dim
                v = out[attn + "v_proj.weight"]
                out[attn + "v_proj.weight"] = torch.einsum("de,gdc->gec", r2, v.view(-1, d, v.shape[-1])).reshape(
                    v.shape
                )
                o = out[attn + "o_proj.weight"]
                out[attn + "o_proj.weight"] = torch.einsum("chd,de->che", o.view(o.shape[0], -1, d), r2).reshape(
                    o.shape
                )
            writes(attn + "o_proj.weight")
        ffn = prefix + "ffn."
        reads(ffn + "gate_proj.weight")
        reads(ffn + "up_proj.weight")
        if i in rotations.r4:
            out[ffn + "down_proj.weight"] = out[ffn + "down_proj.weight"] @ rotations.r4[i]
        writes(ffn + "down_proj.weight")
    return out
