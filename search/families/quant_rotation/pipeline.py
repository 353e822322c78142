"""One quantization recipe end to end: fold, rotate (random or learned), quantize (RTN or GPTQ), score.

Used by the search family, ``hilnas quant eval`` and the benchmark, so all three measure the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from hilnas.errors import UserError
from search.families.mobilellm_flash.model import MobileLLM
from search.families.quant_rotation.cayley import CAYLEY_LR, learn_rotations
from search.families.quant_rotation.qmodel import QuantizedModel, perplexity
from search.families.quant_rotation.quantizers import FULL_PRECISION_BITS, QuantSpec
from search.families.quant_rotation.rotation import ROTATION_KINDS, hadamard_like, make_rotation
from search.families.quant_rotation.transform import Rotations, fold_norms


@dataclass(frozen=True)
class Recipe:
    """What to do to a model: which rotations of which kind, which bit setting, GPTQ or RTN."""

    spec: QuantSpec = field(default_factory=QuantSpec)
    rotation: str = "none"
    seed: int = 0
    r1: bool = True
    r2: bool = True
    r3: bool = True
    r4: bool = True
    gptq: bool = False
    cayley_steps: int = 100
    cayley_lr: float = CAYLEY_LR

    def __post_init__(self) -> None:
        if self.rotation not in ROTATION_KINDS:
            raise UserError(f"Unknown rotation kind {self.rotation!r}; choose one of {', '.join(ROTATION_KINDS)}.")
        if self.cayley_steps < 1 or self.cayley_lr <= 0:
            raise UserError("A learned rotation needs at least one Cayley step and a positive learning rate.")


@dataclass
class Outcome:
    ppl: float
    size_mb: float
    cayley_s: float = 0.0
    cayley_losses: list[float] = field(default_factory=list)
    calibration_loss: tuple[float, float] | None = None  # learned: whole calibration set before/after
    rotations: Rotations | None = None  # what was merged (a learned recipe's learned R1/R2)


def build_rotations(model: MobileLLM, recipe: Recipe, dtype: torch.dtype = torch.float32) -> Rotations:
    """R1/R2 of the recipe's kind and seed (a learned recipe starts here); R3/R4 are fixed Hadamards.

    R3 and R4 are online, so they stay Hadamard (cheap fast transforms on a device) whatever the
    kind; with kind "none" nothing is rotated at all.
    """
    config = model.config
    rotations = Rotations()
    if recipe.rotation == "none":
        return rotations
    if recipe.r1:
        rotations.r1 = make_rotation(recipe.rotation, config.dim, recipe.seed, dtype)
    for i, block in enumerate(model.blocks):
        if recipe.r2 and block.has_attention:
            rotations.r2[i] = make_rotation(recipe.rotation, config.head_dim, recipe.seed * 1009 + i + 1, dtype)
        if recipe.r4:
            rotations.r4[i] = hadamard_like(block.ffn.down_proj.in_features, dtype=dtype)
    if recipe.r3:
        rotations.r3 = hadamard_like(config.head_dim, dtype=dtype)
    return rotations


def quantize(
    model: MobileLLM, recipe: Recipe, calibration: Tensor | None = None, dtype: torch.dtype = torch.float32
) -> tuple[QuantizedModel, Outcome]:
    """The quantized model of ``recipe`` (its ``ppl`` left 0 until scored) and the Cayley figures."""
    folded = fold_norms(model, dtype)
    rotations = build_rotations(folded, recipe, dtype)
    outcome = Outcome(ppl=0.0, size_mb=model_size_mb(model, recipe.spec))
    needs_data = recipe.rotation == "learned" or recipe.gptq
    if needs_data and calibration is None:
        raise UserError("This recipe (learned rotations or GPTQ) needs a calibration set.")
    if recipe.rotation == "learned":
        # GPTQ quantizes the weights afterwards, so (as in SpinQuant) the rotation learns with floating-point
        # weights and only activations and the KV cache quantized; RTN grids are what it must suit otherwise.
        spec = replace(recipe.spec, w_bits=FULL_PRECISION_BITS) if recipe.gptq else recipe.spec
        learned = learn_rotations(
            folded, rotations, spec, calibration, recipe.cayley_steps, recipe.cayley_lr, recipe.seed
        )
        rotations, outcome.cayley_losses, outcome.cayley_s = learned.rotations, learned.losses, learned.seconds
        outcome.calibration_loss = learned.calibration_loss
    outcome.rotations = rotations
    quantized = QuantizedModel.rotated(folded, rotations, recipe.spec)
    if recipe.gptq and recipe.spec.w_bits < FULL_PRECISION_BITS:
        from search.families.quant_rotation.gptq import apply_gptq

        apply_gptq(quantized, calibration)
    return quantized, outcome


def evaluate(model: MobileLLM, recipe: Recipe, heldout: Tensor, calibration: Tensor | None = None) -> Outcome:
    """Held-out perplexity and storage size of ``model`` quantized by ``recipe``."""
    quantized, outcome = quantize(model, recipe, calibration)
    outcome.ppl = perplexity(quantized, heldout)
    return outcome


def model_size_mb(model: MobileLLM, spec: QuantSpec) -> float:
    """Storage of the quantized model: block linears at ``w_bits`` plus a 16-bit scale per output row;
    embedding, (untied) head and norm scales at 16 bits."""
    bits = 0
    for name, param in model.named_parameters():
        if name.startswith("blocks.") and name.endswith("_proj.weight"):
            bits += param.numel() * spec.w_bits + (param.shape[0] * 16 if spec.w_bits < FULL_PRECISION_BITS else 0)
        else:
            bits += param.numel() * 16
    if model.config.share_embeddings:
        bits += model.output.weight.numel() * 16  # folding the final norm unties the head
    return bits / 8 / 1e6
