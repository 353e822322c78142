"""Architectures of the MobileLLM-Flash family and the default space searched over them.

``ArchConfig`` is the one description a model is built from (``model.MobileLLM(config)``); a
search candidate is a flat parameter dict from ``default_space()`` that ``candidate_from_params``
turns into an ``ArchConfig`` plus the ``Workload`` (prompt length, decode KV length) it is
measured at. Unbuildable combinations raise ``InvalidCandidate`` with the reason.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from search.family import InvalidCandidate
from search.space import CategoricalParam, IntParam, PerLayerParam, SearchSpace

AttentionMode = Literal["full", "local", "skip"]


class LayerConfig(BaseModel):
    """One decoder block; widths are per layer so that pruned candidates are expressible."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    attention: AttentionMode = "full"
    n_heads: int = Field(4, ge=1)
    n_kv_heads: int = Field(2, ge=1)
    ffn_dim: int = Field(256, ge=1)


class ArchConfig(BaseModel):
    """A MobileLLM-style decoder: RMSNorm, SwiGLU, GQA, RoPE, optional tied embeddings and block sharing.

    ``head_dim`` is shared by all layers (a pruned layer keeps fewer heads of the same size).
    With ``block_repeat`` = 2 every block runs twice in a row with the same weights (MobileLLM's
    immediate block-wise sharing): twice the compute, no extra parameters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    vocab_size: int = Field(4096, ge=2)
    dim: int = Field(128, ge=1)
    head_dim: int = Field(32, ge=1)
    layers: list[LayerConfig] = Field(min_length=1)
    window: int = Field(64, ge=2, description="keys a local layer sees, the current token included")
    share_embeddings: bool = True
    block_repeat: int = Field(1, ge=1, le=4)
    max_context: int = Field(2048, ge=1, description="longest sequence the RoPE tables cover")
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @model_validator(mode="after")
    def _check(self) -> ArchConfig:
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        for i, layer in enumerate(self.layers):
            if layer.n_heads % layer.n_kv_heads:
                raise ValueError(
                    f"layer {i}: {layer.n_kv_heads} KV heads do not divide its {layer.n_heads} query heads"
                )
        if any(layer.attention == "local" for layer in self.layers) and self.window > self.max_context:
            raise ValueError(f"window {self.window} is larger than the context ({self.max_context} tokens)")
        return self

    @property
    def depth(self) -> int:
        """Blocks executed per token (shared blocks count once per execution)."""
        return len(self.layers) * self.block_repeat

    def executed_layers(self) -> list[LayerConfig]:
        """The blocks in execution order, a shared block repeated ``block_repeat`` times."""
        return [layer for layer in self.layers for _ in range(self.block_repeat)]

    def n_params(self) -> int:
        """Parameter count (shared blocks and tied embeddings counted once)."""
        total = self.vocab_size * self.dim * (1 if self.share_embeddings else 2) + self.dim  # + final norm
        for layer in self.layers:
            total += self.dim * (2 if layer.attention != "skip" else 1) + 3 * self.dim * layer.ffn_dim
            if layer.attention != "skip":
                q_width, kv_width = layer.n_heads * self.head_dim, layer.n_kv_heads * self.head_dim
                total += self.dim * (2 * q_width + 2 * kv_width)
        return total

    def arch_hash(self) -> str:
        """Stable across processes and field order: sha256 of the canonical JSON."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class Workload(BaseModel):
    """The shapes a candidate is measured at: prefill of ``prefill_len`` tokens, decode at ``decode_kv_len``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    prefill_len: int = Field(128, ge=1)
    decode_kv_len: int = Field(256, ge=1)

    @property
    def context(self) -> int:
        return max(self.prefill_len, self.decode_kv_len + 1)


class SpaceOptions(BaseModel):
    """Fixed, non-searched facts of the family (from the spec's ``options``)."""

    model_config = ConfigDict(extra="forbid")
    vocab_size: int = Field(4096, ge=2)


def default_space() -> SearchSpace:
    """Layers, width, heads/KV heads, per-layer FFN width and attention mode, window, sharing, context targets."""
    return SearchSpace(
        params={
            "n_layers": IntParam(low=2, high=12),
            "dim": CategoricalParam(choices=[64, 96, 128, 192, 256]),
            "n_heads": CategoricalParam(choices=[2, 4, 6, 8]),
            "n_kv_heads": CategoricalParam(choices=[1, 2, 4]),
            "ffn_dim": PerLayerParam(length_from="n_layers", item=IntParam(low=128, high=1024, step=64)),
            "attention": PerLayerParam(
                length_from="n_layers", item=CategoricalParam(choices=["full", "local", "skip"])
            ),
            "window": CategoricalParam(choices=[16, 32, 64, 128]),
            "share_embeddings": CategoricalParam(choices=[True, False]),
            "block_repeat": CategoricalParam(choices=[1, 2]),
            "prefill_len": CategoricalParam(choices=[64, 128, 256]),
            "decode_kv_len": CategoricalParam(choices=[128, 256, 512]),
        }
    )


def candidate_from_params(params: dict[str, Any], options: SpaceOptions | None = None) -> tuple[ArchConfig, Workload]:
    """The architecture and workload a flat candidate describes; ``InvalidCandidate`` says why not.

    Query heads split the model width (``head_dim = dim / n_heads``); every layer has the
    candidate's head counts and its own FFN width and attention mode.
    """
    options = options or SpaceOptions()
    try:
        dim, n_heads, n_layers = int(params["dim"]), int(params["n_heads"]), int(params["n_layers"])
        ffn, attention = list(params["ffn_dim"]), list(params["attention"])
        workload = Workload(prefill_len=params["prefill_len"], decode_kv_len=params["decode_kv_len"])
        if dim % n_heads:
            raise InvalidCandidate(f"{n_heads} heads do not divide the model dimension {dim}")
        if len(ffn) != n_layers or len(attention) != n_layers:
            raise InvalidCandidate(f"ffn_dim and attention need one value per layer ({n_layers})")
        if all(mode == "skip" for mode in attention):
            raise InvalidCandidate("every layer skips attention, so no token could see another")
        window = int(params["window"])
        if "local" in attention and window > workload.context:
            raise InvalidCandidate(f"window {window} is larger than the context ({workload.context} tokens)")
        layers = [
            LayerConfig(attention=mode, n_heads=n_heads, n_kv_heads=int(params["n_kv_heads"]), ffn_dim=int(width))
            for mode, width in zip(attention, ffn, strict=True)
        ]
        arch = ArchConfig(
            vocab_size=options.vocab_size,
            dim=dim,
            head_dim=dim // n_heads,
            layers=layers,
            window=window,
            share_embeddings=bool(params["share_embeddings"]),
            block_repeat=int(params["block_repeat"]),
        )
        if workload.context > arch.max_context:
            raise InvalidCandidate(f"the workload needs {workload.context} positions, more than {arch.max_context}")
    except InvalidCandidate:
        raise
    except KeyError as exc:
        raise InvalidCandidate(f"parameter {exc.args[0]!r} is missing") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidCandidate(str(first["msg"]).removeprefix("Value error, ")) from exc
    except (TypeError, ValueError) as exc:
        raise InvalidCandidate(f"a parameter has the wrong type ({exc})") from exc
    return arch, workload


def pruned_space(backbone: ArchConfig, workload: Workload) -> SearchSpace:
    """Sub-architectures of ``backbone`` (MobileLLM-Flash's candidates): fewer layers, a narrower residual
    stream, fewer KV groups and query heads per group, narrower FFNs, and per-layer attention modes.

    Widths are fractions of the backbone's so every candidate can inherit its weights by slicing;
    the head size is the backbone's. Windows longer than the workload's context are left out.
    """
    layers = len(backbone.layers)
    max_kv = min(layer.n_kv_heads for layer in backbone.layers)
    max_ratio = min(layer.n_heads // layer.n_kv_heads for layer in backbone.layers)
    max_ffn = min(layer.ffn_dim for layer in backbone.layers)
    ffn_step = max(8, max_ffn // 8 // 8 * 8)
    dims = sorted({max(8, round(backbone.dim * f / 8) * 8) for f in (0.5, 0.625, 0.75, 0.875, 1.0)})
    windows = [w for w in (16, 32, 64, 128) if w < workload.context] or [2]
    return SearchSpace(
        params={
            "n_layers": IntParam(low=max(1, layers // 2), high=layers),
            "dim": CategoricalParam(choices=[d for d in dims if d <= backbone.dim]),
            "n_kv_heads": IntParam(low=1, high=max_kv),
            "heads_per_kv": IntParam(low=1, high=max_ratio),
            "ffn_dim": PerLayerParam(
                length_from="n_layers",
                item=IntParam(low=max(ffn_step, max_ffn // 4 // ffn_step * ffn_step), high=max_ffn, step=ffn_step),
            ),
            "attention": PerLayerParam(
                length_from="n_layers", item=CategoricalParam(choices=["full", "local", "skip"])
            ),
            "window": CategoricalParam(choices=windows),
        }
    )


def pruned_candidate(params: dict[str, Any], backbone: ArchConfig) -> ArchConfig:
    """The sub-architecture of ``backbone`` a flat candidate of ``pruned_space`` describes; ``InvalidCandidate``
    says why when it cannot be one (``pruning.check_subarchitecture`` checks the weights fit)."""
    try:
        n_layers = int(params["n_layers"])
        ffn, attention = list(params["ffn_dim"]), list(params["attention"])
        n_kv = int(params["n_kv_heads"])
        heads = n_kv * int(params["heads_per_kv"])
        if n_layers > len(backbone.layers):
            raise InvalidCandidate(f"{n_layers} layers is more than the backbone's {len(backbone.layers)}")
        if len(ffn) != n_layers or len(attention) != n_layers:
            raise InvalidCandidate(f"ffn_dim and attention need one value per layer ({n_layers})")
        if all(mode == "skip" for mode in attention):
            raise InvalidCandidate("every layer skips attention, so no token could see another")
        layers = [
            LayerConfig(attention=mode, n_heads=heads, n_kv_heads=n_kv, ffn_dim=int(width))
            for mode, width in zip(attention, ffn, strict=True)
        ]
        return ArchConfig.model_validate(
            {
                **backbone.model_dump(),
                "dim": int(params["dim"]),
                "layers": [layer.model_dump() for layer in layers],
                "window": int(params["window"]),
                "block_repeat": 1,
            }
        )
    except InvalidCandidate:
        raise
    except KeyError as exc:
        raise InvalidCandidate(f"parameter {exc.args[0]!r} is missing") from exc
    except ValidationError as exc:
        raise InvalidCandidate(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from exc
    except (TypeError, ValueError) as exc:
        raise InvalidCandidate(f"a parameter has the wrong type ({exc})") from exc
