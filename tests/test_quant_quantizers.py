"""Fake quantizers, bit settings and GPTQ."""

from __future__ import annotations

import pytest
import torch

from hilnas.errors import UserError
from search.families.quant_rotation.gptq import gptq_quantize
from search.families.quant_rotation.pipeline import Recipe, quantize
from search.families.quant_rotation.qmodel import QuantLinear
from search.families.quant_rotation.quantizers import (
    QuantSpec,
    quantize_asymmetric,
    quantize_kv,
    quantize_weight,
    round_ste,
    weight_scale,
)
from tests.quant_support import tiny_model

torch.set_num_threads(1)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_weight_quantization_is_symmetric_per_output_channel(bits: int) -> None:
    weight = torch.randn(6, 40, generator=_generator()) * torch.arange(1, 7)[:, None]
    quantized = quantize_weight(weight, bits)
    scale = weight_scale(weight, bits)
    levels = quantized / scale
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # every entry on its row's grid
    assert levels.min() >= -(2 ** (bits - 1)) and levels.max() <= 2 ** (bits - 1) - 1
    assert torch.all((quantized - weight).abs() <= scale / 2 + 1e-6)


def test_weight_clip_search_shrinks_a_row_with_an_outlier_and_never_rounds_worse() -> None:
    weight = torch.randn(8, 256, generator=_generator(3))
    weight[0, 0] = 12.0  # one outlier stretches row 0's grid over empty range
    full = quantize_weight(weight, 4)
    searched = quantize_weight(weight, 4, clip_search=True)
    row_error = lambda q: (q - weight).pow(2).sum(dim=1)  # noqa: E731
    assert torch.all(row_error(searched) <= row_error(full) + 1e-6)
    assert row_error(searched)[0] < 0.8 * row_error(full)[0]
    assert weight_scale(weight, 4, clip_search=True)[0] < weight_scale(weight, 4)[0]
    levels = searched / weight_scale(weight, 4, clip_search=True)
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= 8


@pytest.mark.parametrize("bits", [4, 8])
def test_activation_quantization_is_per_token_asymmetric_with_clipping(bits: int) -> None:
    x = torch.randn(5, 64, generator=_generator(1)) + 3.0  # off-centre: symmetric grids would waste levels
    quantized = quantize_asymmetric(x, bits)
    for row, original in zip(quantized, x, strict=True):
        assert len(torch.unique(row)) <= 2**bits
        step = (original.max() - min(original.min(), 0)) / (2**bits - 1)
        assert (row - original).abs().max() <= step / 2 + 1e-5
    clipped = quantize_asymmetric(x, bits, clip=0.5)
    assert torch.all(clipped.amax(dim=-1) <= 0.5 * x.amax(dim=-1) + 1e-5)
    assert torch.equal(quantize_asymmetric(x, 16), x)


def test_kv_quantization_groups_within_each_head() -> None:
    keys = torch.randn(1, 2, 3, 16, generator=_generator(2))
    keys[..., 8:] *= 100.0  # a second group with a far larger range
    grouped = quantize_kv(keys, 4, group=8)
    whole = quantize_kv(keys, 4, group=None)
    first_group_error = lambda q: (q - keys)[..., :8].abs().max()  # noqa: E731
    assert first_group_error(grouped) < first_group_error(whole) / 10
    with pytest.raises(UserError, match="does not divide the head dimension"):
        quantize_kv(keys, 4, group=5)


def test_bit_settings_parse_and_bad_widths_are_one_sentence() -> None:
    assert QuantSpec.parse("W4A4KV4") == QuantSpec(4, 4, 4)
    assert QuantSpec.parse("w4a8kv8") == QuantSpec(4, 8, 8)
    assert QuantSpec.parse("W4A16") == QuantSpec(4, 16, 16)
    assert QuantSpec.parse("W3A6KV5").label == "W3A6KV5"
    with pytest.raises(UserError, match="outside the supported range 2-16"):
        QuantSpec.parse("W1A4KV4")
    with pytest.raises(UserError, match="outside the supported range 2-16"):
        QuantSpec(kv_bits=17)
    with pytest.raises(UserError, match="write it like W4A4KV4"):
        QuantSpec.parse("int4")
    with pytest.raises(UserError, match="clipping ratio"):
        QuantSpec(a_clip=1.5)


def test_straight_through_rounding_passes_gradients() -> None:
    x = torch.linspace(-2, 2, 9, requires_grad=True)
    round_ste(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(9))


def test_gptq_beats_round_to_nearest_on_correlated_inputs() -> None:
    generator = _generator(3)
    inputs = torch.randn(512, 8, generator=generator) @ torch.randn(8, 32, generator=generator)  # low-rank, correlated
    weight = torch.randn(16, 32, generator=generator)
    hessian = 2 * inputs.double().T @ inputs.double()
    gptq = gptq_quantize(weight, hessian, 4)
    levels = gptq / weight_scale(weight, 4)
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # still on the RTN grid
    output_error = lambda w: (inputs @ (w - weight).T).pow(2).mean().item()  # noqa: E731
    assert output_error(gptq) < 0.5 * output_error(quantize_weight(weight, 4))


def test_act_order_rounds_fewer_errors_into_the_output_when_a_few_inputs_dominate() -> None:
    for seed in range(8):
        generator = _generator(10 + seed)
        energy = torch.ones(32)
        energy[torch.randperm(32, generator=generator)[:3]] = 12.0  # three loud input channels anywhere
        inputs = (torch.randn(512, 12, generator=generator) @ torch.randn(12, 32, generator=generator)) * energy
        weight = torch.randn(16, 32, generator=generator)
        hessian = 2 * inputs.double().T @ inputs.double()

        def output_error(quantized: torch.Tensor) -> float:
            return (inputs @ (quantized - weight).T).pow(2).mean().item()  # noqa: B023

        ordered = output_error(gptq_quantize(weight, hessian, 3))
        assert ordered < 0.5 * output_error(gptq_quantize(weight, hessian, 3, act_order=False))


def test_gptq_brings_the_quantized_model_closer_to_full_precision_than_rtn() -> None:
    model = tiny_model()
    calibration = torch.randint(0, 256, (16, 33), generator=_generator(5))
    with torch.no_grad():
        reference = model(calibration[:, :-1])

    def logit_error(gptq: bool) -> float:
        recipe = Recipe(spec=QuantSpec.parse("W3A16"), rotation="random_hadamard", gptq=gptq)
        quantized, _ = quantize(model, recipe, calibration)
        with torch.no_grad():
            return (quantized(calibration[:, :-1]) - reference).pow(2).mean().item()

    assert logit_error(gptq=True) < 0.7 * logit_error(gptq=False)


def test_gptq_recipe_puts_block_weights_on_the_grid() -> None:
    model = tiny_model()
    calibration = torch.randint(0, 256, (4, 17), generator=_generator(4))
    quantized, _ = quantize(
        model, Recipe(spec=QuantSpec.parse("W4A16"), rotation="random_hadamard", gptq=True), calibration
    )
    for layer in quantized.quant_linears():
        assert layer.weight_bits is None  # RTN switched off: GPTQ already quantized it
        assert max(len(torch.unique(row)) for row in layer.weight) <= 2**4  # 4-bit rows


def test_learned_or_gptq_recipes_need_calibration_data() -> None:
    with pytest.raises(UserError, match="needs a calibration set"):
        quantize(tiny_model(), Recipe(rotation="learned"))
    with pytest.raises(UserError, match="Unknown rotation kind"):
        Recipe(rotation="spin")
    with pytest.raises(UserError, match="at least one Cayley step"):
        Recipe(rotation="learned", cayley_steps=0)


def test_quant_linear_reuses_its_quantized_weight_until_the_weight_changes() -> None:
    spec = QuantSpec.parse("W4A16", w_clip_search=True)
    layer = QuantLinear("probe", torch.randn(8, 32, generator=_generator(5)), spec, None)
    first = layer.quantized_weight()
    assert layer.quantized_weight() is first  # the clip search ran once
    assert torch.equal(first, quantize_weight(layer.weight, 4, clip_search=True))
    with torch.no_grad():
        layer.weight.mul_(2.0)
    assert torch.allclose(layer.quantized_weight(), 2.0 * first, atol=1e-6)  # in-place change seen
    trainable = layer.weight.detach().clone().requires_grad_(True)
    out = torch.func.functional_call(layer, {"weight": trainable}, (torch.randn(3, 32),))
    out.sum().backward()
    assert trainable.grad is not None and trainable.grad.abs().sum() > 0  # straight-through path kept
