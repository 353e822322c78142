"""Tiny random-init models for the quant-rotation tests (seconds on a shared CPU)."""

from __future__ import annotations

import torch

from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig


def tiny_model(dim: int = 32, vocab: int = 256, seed: int = 0, **config) -> MobileLLM:
    """Two layers with GQA; norm scales randomised so that folding them is really exercised."""
    layers = config.pop("layers", [LayerConfig(n_heads=2, n_kv_heads=1, ffn_dim=64) for _ in range(2)])
    arch = ArchConfig(vocab_size=vocab, dim=dim, head_dim=16, layers=layers, max_context=64, **config)
    torch.manual_seed(seed)
    model = MobileLLM(arch)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(torch.rand_like(param) + 0.5)
    return model.eval()
