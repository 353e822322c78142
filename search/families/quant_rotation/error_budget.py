"""Where a quantized model loses perplexity: each part of its bit setting applied alone.

Why: the share of the no-rotation gap a rotation can close is capped by the error no rotation
removes, the rounding noise of activations that are already Gaussian-like. Charging each part
(the weights, the KV cache, the inputs of each kind of block linear) its own perplexity increase
shows where that remainder sits and what a rotation changed. Parts interact, so their shares need
not add up to the whole. Weights are rounded to nearest here: GPTQ fits its rounding to the
activation quantization around it, so it has no share of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from search.families.mobilellm_flash.model import MobileLLM
from search.families.quant_rotation.qmodel import QuantizedModel, perplexity
from search.families.quant_rotation.quantizers import FULL_PRECISION_BITS, QuantSpec
from search.families.quant_rotation.transform import Rotations, fold_norms

ACTIVATION_PARTS: dict[str, tuple[str, ...]] = {
    "q/k/v inputs": ("attn.q_proj", "attn.k_proj", "attn.v_proj"),
    "o_proj inputs": ("attn.o_proj",),
    "gate/up inputs": ("ffn.gate_proj", "ffn.up_proj"),
    "down_proj inputs": ("ffn.down_proj",),
}
WHOLE = "all together"


@dataclass(frozen=True)
class BudgetPart:
    name: str
    spec: QuantSpec
    quantized_inputs: tuple[str, ...] | None = None  # block-linear paths whose inputs are quantized; None: all


def budget_parts(spec: QuantSpec) -> list[BudgetPart]:
    """The parts of ``spec`` that quantize something, one at a time, then the whole setting."""
    parts = []
    if spec.w_bits < FULL_PRECISION_BITS:
        weights = QuantSpec(w_bits=spec.w_bits, w_clip_search=spec.w_clip_search)
        parts.append(BudgetPart(f"W{spec.w_bits} weights", weights))
    if spec.kv_bits < FULL_PRECISION_BITS:
        kv = QuantSpec(kv_bits=spec.kv_bits, kv_clip=spec.kv_clip, kv_group=spec.kv_group)
        parts.append(BudgetPart(f"KV{spec.kv_bits} cache", kv))
    if spec.a_bits < FULL_PRECISION_BITS:
        activations = QuantSpec(a_bits=spec.a_bits, a_clip=spec.a_clip)
        for label, paths in ACTIVATION_PARTS.items():
            parts.append(BudgetPart(f"A{spec.a_bits} at {label}", activations, paths))
    parts.append(BudgetPart(WHOLE, spec))
    return parts


def error_budget(model: MobileLLM, rotations: Rotations, spec: QuantSpec, sequences: Tensor) -> dict[str, float]:
    """Perplexity on ``sequences`` of ``model`` rotated by ``rotations`` with each part of ``spec`` alone, by part
    name (``WHOLE``: the full setting, weights by RTN)."""
    folded = fold_norms(model)
    return {
        part.name: perplexity(QuantizedModel.rotated(folded, rotations, part.spec, part.quantized_inputs), sequences)
        for part in budget_parts(spec)
    }
