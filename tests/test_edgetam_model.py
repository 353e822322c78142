"""The EdgeTAM model: shapes, the three memory variants' defining properties, and rejected configurations."""

from __future__ import annotations

import math

import pytest
import torch

from search.families.edgetam.model import MEMORY_KINDS, Attention, EdgeTAM, EdgeTAMConfig

torch.set_num_threads(1)
TINY = EdgeTAMConfig(resolution=32, encoder_width=16, encoder_depth=1, dim=32, memory_dim=16, memory_frames=2)


def _model(**changes: object) -> EdgeTAM:
    torch.manual_seed(0)
    return EdgeTAM(EdgeTAMConfig(**{**TINY.as_dict(), **changes}))


@pytest.mark.parametrize("memory", MEMORY_KINDS)
def test_track_shapes_prompt_frame_and_bank_size(memory: str) -> None:
    model = _model(memory=memory, patch_latents=4, global_latents=4)
    frames = torch.randn(5, 3, 32, 32)
    prompts = torch.zeros(2, 32, 32, dtype=torch.bool)
    prompts[0, 4:12, 4:12] = True
    prompts[1, 20:28, 18:30] = True
    output = model.track(frames, prompts)
    assert output.logits.shape == (5, 2, 32, 32) and output.object_scores.shape == (5, 2)
    assert torch.equal(output.logits[0] > 0, prompts)  # the prompt frame returns its mask
    assert not torch.allclose(output.logits[1, 0], output.logits[1, 1])  # each object follows its own memory
    features, _ = model.encode_image(frames[:1])
    entry = model.encode_memory(features, prompts[:1, None].float(), torch.zeros(1, 32))
    assert entry.tokens.shape[1] == model.config.tokens_per_frame() + 1  # plus the object pointer
    expected = {"dense": 16, "pooled": 4, "perceiver": 8}[memory]  # 4x4 feature map
    assert model.config.tokens_per_frame() == expected


def test_pooled_memory_adds_log4_to_pooled_keys_only() -> None:
    model = _model(memory="pooled")
    features, _ = model.encode_image(torch.randn(1, 3, 32, 32))
    entry = model.encode_memory(features, torch.rand(1, 1, 32, 32), torch.zeros(1, 32))
    assert torch.allclose(entry.score_bias[:-1], torch.full((4,), math.log(4)))
    assert entry.score_bias[-1] == 0  # the object pointer is not pooled


def test_log4_bias_makes_pooled_attention_equal_attention_over_the_four_copies() -> None:
    """A pooled token whose four originals were equal must weigh as much as those four did."""
    torch.manual_seed(0)
    attention = Attention(8, heads=2)
    query = torch.randn(1, 3, 8)
    pooled = torch.randn(1, 2, 8)
    pointer = torch.randn(1, 1, 8)
    dense = torch.cat([pooled.repeat_interleave(4, dim=1), pointer], dim=1)
    compact = torch.cat([pooled, pointer], dim=1)
    bias = torch.tensor([math.log(4), math.log(4), 0.0]).view(1, 1, 1, -1)
    assert torch.allclose(attention(query, dense, dense), attention(query, compact, compact, bias), atol=1e-6)
    assert not torch.allclose(attention(query, dense, dense), attention(query, compact, compact), atol=1e-4)


def test_perceiver_global_latents_ignore_token_order_and_patch_latents_see_only_their_window() -> None:
    model = _model(memory="perceiver", global_latents=3, patch_latents=4)
    perceiver = model.memory_encoder.perceiver
    memory = torch.randn(1, 16, 4, 4)
    latents = perceiver(memory)
    assert latents.shape == (1, 3 + 4, 16)
    shuffled = memory.flatten(2)[:, :, torch.randperm(16)].view(1, 16, 4, 4)
    # Global latents see a set of tokens (no position encoding): shuffling them changes nothing.
    assert torch.allclose(perceiver(shuffled)[:, :3], latents[:, :3], atol=1e-5)
    changed = memory.clone()
    changed[:, :, :2, :2] += 1.0  # top-left 2x2 window, the first patch latent's
    after = perceiver(changed)
    assert not torch.allclose(after[:, 3], latents[:, 3])
    assert torch.allclose(after[:, 4:], latents[:, 4:], atol=1e-6)
    assert torch.count_nonzero(perceiver.positions[0, :3]) == 0  # global latents carry no position
    assert torch.count_nonzero(perceiver.positions[0, 3:]) > 0


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"memory": "perceiver", "patch_latents": 9}, "9 patch latents .3x3 windows. do not tile the 4x4 feature map"),
        ({"memory": "perceiver", "patch_latents": 8}, "8 patch latents do not form a square grid"),
        ({"memory": "pooled", "resolution": 24}, "2x2 pooling needs an even feature map, not 3x3"),
        ({"resolution": 30}, "not a multiple of the encoder stride"),
        ({"heads": 3}, "3 heads do not divide"),
    ],
)
def test_unbuildable_configurations_say_why(changes: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        _model(**changes)


def test_gradients_reach_every_component() -> None:
    model = _model(memory="perceiver", patch_latents=4, global_latents=2)
    prompts = torch.zeros(1, 32, 32, dtype=torch.bool)
    prompts[0, 8:20, 8:20] = True
    output = model.track(torch.randn(4, 3, 32, 32), prompts)
    (output.logits[1:].mean() + output.object_scores[1:].mean()).backward()
    for name in ("image_encoder", "memory_encoder", "memory_attention", "mask_decoder"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert model.memory_encoder.perceiver.global_latents.grad.abs().sum() > 0
