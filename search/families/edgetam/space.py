"""The EdgeTAM search space and the translation of sampled parameters into a buildable architecture.

Searched: input resolution, encoder width and depth, memory-attention layers, memory-bank length and
the memory variant with its perceiver latents. Transformer widths and heads are family options, fixed
within a search, so that every candidate inherits attention weights from the same teacher.
"""

from __future__ import annotations

from typing import Any

from search.families.edgetam.model import MEMORY_KINDS, EdgeTAMConfig
from search.family import InvalidCandidate
from search.space import CategoricalParam, Condition, IntParam, SearchSpace

RESOLUTIONS = [64, 96, 128]
ENCODER_WIDTHS = [16, 24, 32, 48]
MAX_ENCODER_DEPTH = 4
MAX_ATTENTION_LAYERS = 2
MAX_MEMORY_FRAMES = 7
GLOBAL_LATENTS = [4, 8, 16]
PATCH_LATENTS = [4, 9, 16, 64]


def default_space() -> SearchSpace:
    perceiver_only = Condition(param="memory", values=["perceiver"])
    return SearchSpace(
        params={
            "resolution": CategoricalParam(choices=RESOLUTIONS, description="square input size in pixels"),
            "encoder_width": CategoricalParam(choices=ENCODER_WIDTHS),
            "encoder_depth": IntParam(low=1, high=MAX_ENCODER_DEPTH),
            "attention_layers": IntParam(low=1, high=MAX_ATTENTION_LAYERS),
            "memory_frames": IntParam(low=1, high=MAX_MEMORY_FRAMES, description="recent frames beside the prompt"),
            "memory": CategoricalParam(choices=list(MEMORY_KINDS)),
            "global_latents": CategoricalParam(choices=GLOBAL_LATENTS, condition=perceiver_only),
            "patch_latents": CategoricalParam(
                choices=PATCH_LATENTS, condition=perceiver_only, description="one per window of a square grid"
            ),
        }
    )


def candidate_config(params: dict[str, Any], dim: int, memory_dim: int, heads: int) -> EdgeTAMConfig:
    """The architecture of ``params``; ``InvalidCandidate`` (with every reason) when it cannot be built."""
    known = {
        "resolution",
        "encoder_width",
        "encoder_depth",
        "attention_layers",
        "memory_frames",
        "memory",
        "global_latents",
        "patch_latents",
    }
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidCandidate(f"unknown EdgeTAM parameters: {unknown}")
    missing = sorted(known - {"global_latents", "patch_latents"} - set(params))
    if missing:
        raise InvalidCandidate(f"missing EdgeTAM parameters: {missing}")
    if params["memory"] not in MEMORY_KINDS:
        raise InvalidCandidate(f"memory must be one of {list(MEMORY_KINDS)}, not {params['memory']!r}")
    config = EdgeTAMConfig(dim=dim, memory_dim=memory_dim, heads=heads, **params)
    problems = config.problems()
    if problems:
        raise InvalidCandidate("; ".join(problems))
    return config
