"""The MobileLLM-Flash candidate model: cached decode, attention modes, parameter count, validation."""

from __future__ import annotations

import pytest
import torch

from search.families.mobilellm_flash.family import MobileLLMFlashFamily
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig
from search.family import InvalidCandidate
from tests.flash_support import candidate

torch.set_num_threads(1)


def tiny(modes: list[str], window: int = 4, block_repeat: int = 1, **layer: int) -> MobileLLM:
    torch.manual_seed(0)
    widths = {"n_heads": 4, "n_kv_heads": 2, "ffn_dim": 48} | layer
    layers = [LayerConfig(attention=mode, **widths) for mode in modes]
    config = ArchConfig(vocab_size=97, dim=32, head_dim=8, layers=layers, window=window, block_repeat=block_repeat)
    return MobileLLM(config).eval()


@pytest.mark.parametrize("block_repeat", [1, 2])
def test_cached_decode_equals_full_forward(block_repeat: int) -> None:
    model = tiny(["full", "local", "skip", "local"], window=4, block_repeat=block_repeat)
    tokens = torch.randint(0, 97, (1, 19))
    with torch.no_grad():
        full = model(tokens)
        logits, cache = model.prefill(tokens[:, :3])
        assert torch.allclose(logits, full[:, 2], atol=1e-5)
        for i in range(3, 19):
            logits, new_kv = model.decode(tokens[:, i : i + 1], torch.tensor([i]), cache)
            cache = model.append_to_cache(cache, new_kv)
            assert torch.allclose(logits, full[:, i], atol=1e-5), f"position {i}"
    # A local layer keeps window - 1 keys, a full layer all of them.
    lengths = [k.shape[2] for k, _ in cache]
    assert lengths == [19] * block_repeat + [3] * (2 * block_repeat)


def test_chunked_local_prefill_matches_prefix_runs() -> None:
    """The O(T * window) chunked path (T > window) gives the logits of running each prefix alone."""
    model = tiny(["local"], window=4, n_heads=2, n_kv_heads=1)
    tokens = torch.randint(0, 97, (1, 11))
    with torch.no_grad():
        chunked = model(tokens)
        for t in (1, 4, 5, 11):
            assert torch.allclose(model(tokens[:, :t])[:, -1], chunked[:, t - 1], atol=1e-5)


def test_attention_modes_limit_what_a_token_sees() -> None:
    tokens = torch.randint(0, 97, (1, 12))
    changed = tokens.clone()
    changed[0, 0] = (tokens[0, 0] + 1) % 97
    with torch.no_grad():
        local, full, skip = tiny(["local"], window=4), tiny(["full"]), tiny(["skip"])
        local_diff = (local(tokens) - local(changed)).abs().amax(-1)[0]
        full_diff = (full(tokens) - full(changed)).abs().amax(-1)[0]
        skip_diff = (skip(tokens) - skip(changed)).abs().amax(-1)[0]
    assert (local_diff[:4] > 0).all() and (local_diff[4:] == 0).all()  # positions 0-3 see token 0
    assert (full_diff > 0).all()
    assert (skip_diff[1:] == 0).all()
    assert not hasattr(skip.blocks[0], "attn")


def test_parameter_count_is_analytic_and_sharing_counts_once() -> None:
    for model in (tiny(["full", "skip"]), tiny(["local"], block_repeat=2), tiny(["full"], n_heads=2, n_kv_heads=1)):
        assert model.config.n_params() == sum(p.numel() for p in model.parameters())
    assert tiny(["full"]).config.n_params() == tiny(["full"], block_repeat=2).config.n_params()


def test_per_layer_widths_are_expressible() -> None:
    torch.manual_seed(0)
    layers = [LayerConfig(n_heads=4, n_kv_heads=2, ffn_dim=64), LayerConfig(n_heads=2, n_kv_heads=1, ffn_dim=16)]
    model = MobileLLM(ArchConfig(vocab_size=50, dim=32, head_dim=8, layers=layers))
    assert model.blocks[1].attn.q_proj.out_features == 16 and model.blocks[1].ffn.up_proj.out_features == 16
    assert model(torch.randint(0, 50, (2, 5))).shape == (2, 5, 50)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"dim": 64, "n_heads": 6}, "6 heads do not divide the model dimension 64"),
        ({"n_heads": 2, "n_kv_heads": 4}, "4 KV heads do not divide its 2 query heads"),
        ({"window": 128, "prefill_len": 64, "decode_kv_len": 64}, "window 128 is larger than the context (65 tokens)"),
        ({"attention": ["skip", "skip"]}, "every layer skips attention"),
    ],
)
def test_unbuildable_candidates_are_rejected_with_the_reason(overrides: dict, reason: str) -> None:
    with pytest.raises(InvalidCandidate, match=reason.replace("(", r"\(").replace(")", r"\)")):
        MobileLLMFlashFamily().check_candidate(candidate(**overrides))


def test_default_space_samples_buildable_candidates_and_hash_ignores_workload() -> None:
    import optuna

    family = MobileLLMFlashFamily()
    space = family.default_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    built = 0
    for _ in range(30):
        params = space.sample(study.ask())
        try:
            family.check_candidate(params)
        except InvalidCandidate:
            continue
        built += 1
    assert built > 5
    first = family.arch_hash(candidate())
    assert first == family.arch_hash(candidate(prefill_len=128))  # the shape is a separate cache-key part
    assert first != family.arch_hash(candidate(window=32))
