"""Rotations leave the full-precision model unchanged; bad rotations and models are one sentence; the error budget."""

from __future__ import annotations

import pytest
import torch

from hilnas.errors import UserError
from search.families.mobilellm_flash.space import LayerConfig
from search.families.quant_rotation.error_budget import ACTIVATION_PARTS, WHOLE, BudgetPart, budget_parts, error_budget
from search.families.quant_rotation.pipeline import Recipe, build_rotations, quantize
from search.families.quant_rotation.qmodel import QuantizedModel, perplexity
from search.families.quant_rotation.quantizers import QuantSpec
from search.families.quant_rotation.rotation import check_orthogonal, hadamard_like, random_hadamard
from search.families.quant_rotation.transform import Rotations, fold_norms, rotated_weights
from tests.quant_support import tiny_model

torch.set_num_threads(1)

# dim 48 = 16 x 3 and ffn 96 exercise the Hadamard-like construction for non-powers of two;
# a local layer (chunked path: 20 tokens > window 8), a skipped-attention layer and shared blocks.
ODD_LAYERS = [
    LayerConfig(attention="full", n_heads=3, n_kv_heads=1, ffn_dim=96),
    LayerConfig(attention="local", n_heads=3, n_kv_heads=3, ffn_dim=64),
    LayerConfig(attention="skip", n_heads=3, n_kv_heads=1, ffn_dim=64),
]
MODELS = {
    "tied-gqa": lambda: tiny_model(dim=32, vocab=64),
    "odd-sizes": lambda: tiny_model(dim=48, vocab=64, layers=ODD_LAYERS, window=8, block_repeat=2),
    "untied": lambda: tiny_model(dim=32, vocab=64, share_embeddings=False),
}


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("kind", ["random_orthogonal", "random_hadamard"])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 2e-6), (torch.float64, 1e-13)])
def test_rotated_full_precision_logits_equal_the_original(model_name, kind, dtype, tolerance) -> None:
    model = MODELS[model_name]().to(dtype)
    tokens = torch.randint(0, 64, (2, 20), generator=torch.Generator().manual_seed(0))
    reference = model(tokens)
    rotated, _ = quantize(model, Recipe(rotation=kind, seed=3), dtype=dtype)
    assert _relative_difference(rotated(tokens), reference) < tolerance
    # ... and the rotations really changed the weights the model runs with
    changed = rotated.model.tok_embeddings.weight - fold_norms(model, dtype).tok_embeddings.weight
    assert changed.abs().max() > 1e-3


@pytest.mark.parametrize("only", ["r1", "r2", "r3", "r4"])
def test_each_rotation_alone_is_invariant(only: str) -> None:
    model = tiny_model(vocab=64).double()
    flags = {name: name == only for name in ("r1", "r2", "r3", "r4")}
    tokens = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    rotated, _ = quantize(model, Recipe(rotation="random_orthogonal", seed=1, **flags), dtype=torch.float64)
    assert _relative_difference(rotated(tokens), model(tokens)) < 1e-13


def test_folding_unties_the_head_and_leaves_the_original_alone() -> None:
    model = tiny_model(vocab=64)
    embedding = model.tok_embeddings.weight.detach().clone()
    folded = fold_norms(model)
    assert model.output.weight is model.tok_embeddings.weight  # the caller's model is untouched
    assert torch.equal(model.tok_embeddings.weight, embedding)
    assert folded.output.weight is not folded.tok_embeddings.weight
    assert torch.allclose(folded.output.weight, embedding * model.norm.weight[None, :])
    assert all(torch.all(b.ffn_norm.weight == 1) for b in folded.blocks)


def test_quantized_rotated_model_differs_from_unrotated() -> None:
    """Rotation matters once quantized (else the invariance test above could be passing vacuously)."""
    model = tiny_model(vocab=64)
    tokens = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(2))
    spec = QuantSpec.parse("W4A4KV4")
    plain, _ = quantize(model, Recipe(spec=spec))
    rotated, _ = quantize(model, Recipe(spec=spec, rotation="random_hadamard"))
    assert _relative_difference(plain(tokens), rotated(tokens)) > 1e-3


def test_hadamard_matrices_are_orthogonal() -> None:
    for n in (16, 48, 7):
        for matrix in (hadamard_like(n), random_hadamard(n, seed=5)):
            check_orthogonal(matrix)
    power_of_two = hadamard_like(16) * 4
    assert torch.equal(power_of_two.abs(), torch.ones(16, 16, dtype=power_of_two.dtype))  # a true Hadamard


def test_non_orthogonal_rotation_is_one_sentence() -> None:
    model = fold_norms(tiny_model(vocab=64))
    bad = torch.eye(32) * 1.1
    with pytest.raises(UserError, match=r"R1 is not orthogonal"):
        QuantizedModel(model, Rotations(r1=bad), QuantSpec())
    with pytest.raises(UserError, match=r"R3 is 32 x 32, but its place needs 16 x 16"):
        QuantizedModel(model, Rotations(r3=torch.eye(32)), QuantSpec())
    with pytest.raises(UserError, match="square"):
        check_orthogonal(torch.ones(3, 4))


def test_a_model_that_is_not_llama_style_is_refused() -> None:
    with pytest.raises(UserError, match="not a Llama-style decoder"):
        fold_norms(torch.nn.Sequential(torch.nn.Linear(4, 4)))


def test_rotated_weights_are_differentiable_in_the_rotations() -> None:
    model = fold_norms(tiny_model(vocab=64))
    rotations = build_rotations(model, Recipe(rotation="random_hadamard"))
    rotations.r1.requires_grad_(True)
    weights = rotated_weights(model, rotations)
    weights["blocks.0.attn.q_proj.weight"].sum().backward()
    assert rotations.r1.grad is not None and rotations.r1.grad.abs().sum() > 0


def test_kv_quantization_hook_reaches_prefill_chunked_local_and_cached_decode() -> None:
    """R3 and KV quantization sit in Attention's public ``qkv_transform`` hook: the full forward is changed
    by them, and a prefill (chunked for the local layer) followed by cached decoding gives the very same
    logits, because every quantizer works per token and the cache holds the quantized keys and values."""
    model = MODELS["odd-sizes"]().double()  # window 8: a 12-token prompt takes the chunked local path
    spec = QuantSpec.parse("W16A16KV4")  # only the hook quantizes
    quantized, _ = quantize(model, Recipe(spec=spec, rotation="random_hadamard", seed=4), dtype=torch.float64)
    network = quantized.model
    tokens = torch.randint(0, 64, (1, 20), generator=torch.Generator().manual_seed(3))
    full = network(tokens)
    assert _relative_difference(full, model(tokens)) > 1e-3
    logits, cache = network.prefill(tokens[:, :12])
    assert _relative_difference(logits, full[:, 11]) < 1e-12
    for position in range(12, 20):
        logits, new_kv = network.decode(tokens[:, position : position + 1], torch.tensor([position]), cache)
        cache = network.append_to_cache(cache, new_kv)
        assert _relative_difference(logits, full[:, position]) < 1e-12


def test_the_error_budget_quantizes_one_part_at_a_time() -> None:
    model = tiny_model(vocab=64)
    tokens = torch.randint(0, 64, (4, 17), generator=torch.Generator().manual_seed(4))
    spec = QuantSpec.parse("W4A4KV4")
    recipe = Recipe(spec=spec, rotation="random_hadamard")
    parts = [part.name for part in budget_parts(spec)]
    assert parts[:2] == ["W4 weights", "KV4 cache"] and parts[-1] == WHOLE
    assert parts[2:-1] == [f"A4 at {label}" for label in ACTIVATION_PARTS]
    budget = error_budget(model, build_rotations(model, recipe), spec, tokens)
    assert budget[WHOLE] == pytest.approx(perplexity(quantize(model, recipe)[0], tokens), rel=1e-6)
    # every part quantizes something, and something of its own
    assert len({round(ppl, 9) for ppl in [*budget.values(), perplexity(model, tokens)]}) == len(parts) + 1
    only_values = QuantizedModel(fold_norms(model), Rotations(), QuantSpec(a_bits=4), ("attn.v_proj",))
    bits = {layer.name: layer.spec.a_bits for layer in only_values.quant_linears()}
    assert bits["blocks.1.attn.v_proj"] == 4 and sorted(bits.values()).count(4) == len(model.blocks)
    weights_only = QuantSpec.parse("W4A16")
    assert budget_parts(weights_only) == [budget_parts(spec)[0], BudgetPart(WHOLE, weights_only)]
