"""Tiny random-init models (and a tiny tokenizer) for the quant-rotation tests: seconds on a shared CPU."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from evaluators.corpus import build_stdlib_corpus
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig
from search.families.mobilellm_flash.tokenizer import TextTokenizer, train_tokenizer
from search.families.quant_rotation.checkpoint import save_model

TINY_VOCAB = 300


def tiny_model(dim: int = 32, vocab: int = TINY_VOCAB, seed: int = 0, **config) -> MobileLLM:
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


@lru_cache(maxsize=1)
def tiny_tokenizer() -> TextTokenizer:
    """A byte-level BPE of at most ``TINY_VOCAB`` tokens learnt from a few standard-library documents."""
    return train_tokenizer(build_stdlib_corpus().validation[:50], vocab_size=TINY_VOCAB)


def save_tiny_checkpoint(path: Path) -> Path:
    """``tiny_model()`` and ``tiny_tokenizer()`` in one hilnas checkpoint file (what ``--model`` accepts)."""
    save_model(tiny_model(), path, tiny_tokenizer())
    return path
