"""How much each part of a trained MobileLLM matters, measured from its activations on calibration text.

Structured pruning keeps the most important parts, so the scores must come from what the network
actually computes on real tokens (weight magnitudes alone ignore the inputs):

- blocks: ShortGPT's block influence, 1 - cosine(block input, block output) averaged over tokens. A block
  that barely turns the residual stream scores near 0 and is the first to go.
- query heads and KV groups: the mean L2 norm of each head's contribution to the residual stream (its slice
  of the attention output through its columns of ``o_proj``); a KV group scores the norm of the summed
  contribution of the query heads that share it, since dropping the group drops all of them.
- FFN channels: mean |silu(gate) * up| of each channel (the input of ``down_proj``).
- hidden channels (Minitron): per residual channel, the mean |activation| at the embedding's and every
  RMSNorm's output, summed over those sites.

Scores are computed once per backbone; ``Importance.to_dict``/``from_dict`` make them JSON-cacheable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from search.families.mobilellm_flash.model import MobileLLM


@dataclass
class Importance:
    """Calibration-derived scores of one backbone (``arch_hash`` says which); larger means keep.

    ``heads``, ``kv_groups`` and ``ffn`` hold one tensor per layer (empty for a layer without attention).
    """

    arch_hash: str
    blocks: Tensor
    heads: list[Tensor]
    kv_groups: list[Tensor]
    ffn: list[Tensor]
    hidden: Tensor
    calibration_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch_hash": self.arch_hash,
            "blocks": self.blocks.tolist(),
            "heads": [scores.tolist() for scores in self.heads],
            "kv_groups": [scores.tolist() for scores in self.kv_groups],
            "ffn": [scores.tolist() for scores in self.ffn],
            "hidden": self.hidden.tolist(),
            "calibration_tokens": self.calibration_tokens,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Importance:
        def tensor(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=torch.float32)

        return cls(
            arch_hash=data["arch_hash"],
            blocks=tensor(data["blocks"]),
            heads=[tensor(scores) for scores in data["heads"]],
            kv_groups=[tensor(scores) for scores in data["kv_groups"]],
            ffn=[tensor(scores) for scores in data["ffn"]],
            hidden=tensor(data["hidden"]),
            calibration_tokens=int(data["calibration_tokens"]),
        )


class _Accumulator:
    """Running sums the forward hooks add to; ``result`` turns them into per-token means."""

    def __init__(self, model: MobileLLM) -> None:
        config = model.config
        n_layers = len(config.layers)
        self.block_sum = torch.zeros(n_layers, dtype=torch.float64)
        self.block_tokens = [0] * n_layers
        self.head_sum = [torch.zeros(layer.n_heads, dtype=torch.float64) for layer in config.layers]
        self.group_sum = [torch.zeros(layer.n_kv_heads, dtype=torch.float64) for layer in config.layers]
        self.attention_tokens = [0] * n_layers
        self.ffn_sum = [torch.zeros(layer.ffn_dim, dtype=torch.float64) for layer in config.layers]
        self.ffn_tokens = [0] * n_layers
        self.hidden_sum = torch.zeros(config.dim, dtype=torch.float64)
        self.tokens = 0

    def hidden(self, _module: torch.nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.hidden_sum += output.detach().abs().sum(dim=(0, 1)).double()

    def block(self, index: int, inputs: tuple[Tensor, ...], output: tuple[Tensor, Any]) -> None:
        before, after = inputs[0], output[0]
        self.block_sum[index] += (1 - F.cosine_similarity(before, after, dim=-1)).sum().double()
        self.block_tokens[index] += before.shape[0] * before.shape[1]

    def attention(self, index: int, o_proj: torch.nn.Linear, n_kv_heads: int, heads_out: Tensor) -> None:
        """``heads_out`` (B, T, H * D) is the input of ``o_proj``; each head's contribution is its slice times
        its columns of the projection."""
        b, t, width = heads_out.shape
        n_heads = len(self.head_sum[index])
        head_dim = width // n_heads
        per_head = heads_out.view(b, t, n_heads, head_dim)
        columns = o_proj.weight.view(-1, n_heads, head_dim)
        contribution = torch.einsum("bthd,chd->bthc", per_head, columns)  # (B, T, H, C)
        self.head_sum[index] += contribution.norm(dim=-1).sum(dim=(0, 1)).double()
        grouped = contribution.view(b, t, n_kv_heads, n_heads // n_kv_heads, -1).sum(dim=3)
        self.group_sum[index] += grouped.norm(dim=-1).sum(dim=(0, 1)).double()
        self.attention_tokens[index] += b * t

    def ffn(self, index: int, channels: Tensor) -> None:
        """``channels`` is silu(gate) * up, the input of ``down_proj``."""
        self.ffn_sum[index] += channels.abs().sum(dim=(0, 1)).double()
        self.ffn_tokens[index] += channels.shape[0] * channels.shape[1]

    def result(self, model: MobileLLM) -> Importance:
        def mean(total: Tensor, count: int) -> Tensor:
            return (total / max(count, 1)).float()

        has_attention = [layer.attention != "skip" for layer in model.config.layers]
        empty = torch.zeros(0)
        return Importance(
            arch_hash=model.config.arch_hash(),
            blocks=torch.stack([mean(s, n) for s, n in zip(self.block_sum, self.block_tokens, strict=True)]),
            heads=[
                mean(s, n) if on else empty
                for s, n, on in zip(self.head_sum, self.attention_tokens, has_attention, strict=True)
            ],
            kv_groups=[
                mean(s, n) if on else empty
                for s, n, on in zip(self.group_sum, self.attention_tokens, has_attention, strict=True)
            ],
            ffn=[mean(s, n) for s, n in zip(self.ffn_sum, self.ffn_tokens, strict=True)],
            hidden=mean(self.hidden_sum, self.tokens),
            calibration_tokens=self.tokens,
        )


@torch.no_grad()
def compute_importance(model: MobileLLM, calibration: Tensor, batch_size: int = 8) -> Importance:
    """Scores of every block, head, KV group, FFN channel and hidden channel on ``calibration`` (N, T) tokens.

    Hooks observe an ordinary forward pass, so the scores describe exactly the computation the model runs
    (a block shared by ``block_repeat`` contributes every execution).
    """
    if calibration.ndim != 2 or calibration.numel() == 0:
        raise ValueError(
            f"calibration must be a non-empty (windows, tokens) tensor, got shape {tuple(calibration.shape)}"
        )
    sums = _Accumulator(model)
    handles = [model.tok_embeddings.register_forward_hook(sums.hidden), model.norm.register_forward_hook(sums.hidden)]
    for index, block in enumerate(model.blocks):
        handles.append(block.register_forward_hook(lambda _m, i, o, index=index: sums.block(index, i, o)))
        handles.append(block.ffn_norm.register_forward_hook(sums.hidden))
        handles.append(block.ffn.down_proj.register_forward_pre_hook(lambda _m, i, index=index: sums.ffn(index, i[0])))
        if block.has_attention:
            attention = block.attn
            handles.append(block.attn_norm.register_forward_hook(sums.hidden))
            handles.append(
                attention.o_proj.register_forward_pre_hook(
                    lambda m, i, index=index, g=attention.n_kv_heads: sums.attention(index, m, g, i[0])
                )
            )
    was_training = model.training
    model.eval()
    try:
        for batch in calibration.split(batch_size):
            model(batch)
            sums.tokens += batch.numel()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return sums.result(model)
