"""The quantized forward: a folded MobileLLM whose linears fake-quantize and whose attention rotates.

``QuantizedModel`` copies a folded model, (1) swaps every block linear for a ``QuantLinear``
(optional online rotation of its input, per-token activation quantization, per-channel weight
quantization) and (2) sets each attention's public ``qkv_transform`` hook to a ``QKVQuantizer``,
which rotates queries and keys by R3 after RoPE and fake-quantizes keys and values like a KV cache
(in every attention path, decode included, so the cache holds the quantized keys and values).
Embedding and output head stay in floating point (as in QuaRot and SpinQuant). Parameter names are
those of the MobileLLM, so ``transform.rotated_weights`` can be swapped in with
``torch.func.functional_call`` (how the Cayley optimiser backpropagates into R1/R2).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search.families.mobilellm_flash.model import MobileLLM
from search.families.quant_rotation.quantizers import (
    FULL_PRECISION_BITS,
    QuantSpec,
    quantize_asymmetric,
    quantize_kv,
    quantize_weight,
)
from search.families.quant_rotation.transform import Rotations, check_rotations, rotated_weights

BLOCK_LINEARS = (
    "attn.q_proj",
    "attn.k_proj",
    "attn.v_proj",
    "attn.o_proj",
    "ffn.gate_proj",
    "ffn.up_proj",
    "ffn.down_proj",
)
Observer = Callable[[str, Tensor], None]


class QuantLinear(nn.Module):
    """y = Q_a(x R_online) Q_w(W)^T; ``weight_bits`` None means the weight is already quantized (GPTQ)."""

    def __init__(self, name: str, weight: Tensor, spec: QuantSpec, online: Tensor | None) -> None:
        super().__init__()
        self.name = name
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.spec = spec
        self.weight_bits: int | None = spec.w_bits
        self.register_buffer("online", online.to(weight.dtype) if online is not None else None)
        self.observer: Observer | None = None
        self._quantized: tuple[Tensor, int, Tensor] | None = None  # (weight, its version, Q_w(weight))

    def quantized_weight(self) -> Tensor:
        """Q_w(W), reused while the weight is unchanged: evaluation runs thousands of forwards on fixed
        weights, and the clip search alone rounds each one 21 times. Weights that carry gradients (the
        Cayley optimiser's) are quantized afresh, so the straight-through graph is built every step."""
        weight = self.weight
        if self.weight_bits is None:
            return weight
        if weight.requires_grad:
            return quantize_weight(weight, self.weight_bits, self.spec.w_clip_search)
        cached = self._quantized
        if cached is None or cached[0] is not weight or cached[1] != weight._version:
            with torch.no_grad():
                cached = (weight, weight._version, quantize_weight(weight, self.weight_bits, self.spec.w_clip_search))
            self._quantized = cached
        return cached[2]

    def forward(self, x: Tensor) -> Tensor:
        if self.online is not None:
            x = x @ self.online
        x = quantize_asymmetric(x, self.spec.a_bits, self.spec.a_clip)
        if self.observer is not None:
            self.observer(self.name, x)
        return F.linear(x, self.quantized_weight())


class QKVQuantizer(nn.Module):
    """The attention hook: q, k -> q R3, k R3 (R3 orthogonal, so q k^T is unchanged), then K and V fake-quantized."""

    def __init__(self, spec: QuantSpec, r3: Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("r3", r3.to(dtype) if r3 is not None else None)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.r3 is not None:
            q, k = q @ self.r3, k @ self.r3
        spec = self.spec
        return (
            q,
            quantize_kv(k, spec.kv_bits, spec.kv_group, spec.kv_clip),
            quantize_kv(v, spec.kv_bits, spec.kv_group, spec.kv_clip),
        )


class QuantizedModel(nn.Module):
    """A rotated, fake-quantized copy of a folded MobileLLM (load the rotated weights with ``load``).

    ``quantized_inputs`` names the ``BLOCK_LINEARS`` paths whose inputs take the spec's activation bits (None:
    all); the others read floating-point inputs, which is how ``error_budget`` charges each input its share.
    """

    def __init__(
        self,
        folded: MobileLLM,
        rotations: Rotations,
        spec: QuantSpec,
        quantized_inputs: Collection[str] | None = None,
    ) -> None:
        super().__init__()
        check_rotations(folded, rotations)
        self.spec = spec
        self.model = copy.deepcopy(folded)
        unquantized_inputs = replace(spec, a_bits=FULL_PRECISION_BITS)
        for i, block in enumerate(self.model.blocks):
            for path in BLOCK_LINEARS:
                owner_name, attr = path.split(".")
                if owner_name == "attn" and not block.has_attention:
                    continue
                owner = getattr(block, owner_name)
                online = rotations.r4.get(i) if attr == "down_proj" else None
                own_spec = spec if quantized_inputs is None or path in quantized_inputs else unquantized_inputs
                setattr(owner, attr, QuantLinear(f"blocks.{i}.{path}", getattr(owner, attr).weight, own_spec, online))
            if block.has_attention:
                block.attn.qkv_transform = QKVQuantizer(spec, rotations.r3, block.attn.q_proj.weight.dtype)
        self.model.requires_grad_(False)

    @classmethod
    def rotated(
        cls,
        folded: MobileLLM,
        rotations: Rotations,
        spec: QuantSpec,
        quantized_inputs: Collection[str] | None = None,
    ) -> QuantizedModel:
        """The quantized model with the rotations merged into its weights (ready to run)."""
        quantized = cls(folded, rotations, spec, quantized_inputs)
        quantized.load(rotated_weights(folded, rotations))
        return quantized

    def quant_linears(self) -> list[QuantLinear]:
        return [m for m in self.model.modules() if isinstance(m, QuantLinear)]

    @torch.no_grad()
    def load(self, weights: dict[str, Tensor]) -> None:
        """Copy (rotated) weights in by parameter name."""
        params = dict(self.model.named_parameters())
        for name, value in weights.items():
            params[name].copy_(value)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.model(tokens)

    def forward_with(self, weights: dict[str, Tensor], tokens: Tensor) -> Tensor:
        """Logits with ``weights`` in place of the parameters (gradients flow into them)."""
        return torch.func.functional_call(self.model, weights, (tokens,))


def perplexity(logits_fn: Callable[[Tensor], Tensor], sequences: Tensor, batch_size: int = 8) -> float:
    """exp of the mean next-token cross-entropy over every position of ``sequences`` (N, L)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start : start + batch_size]
            logits = logits_fn(batch[:, :-1]).float()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
            total += loss.item()
            count += batch[:, 1:].numel()
    return float(torch.exp(torch.tensor(total / count)))
