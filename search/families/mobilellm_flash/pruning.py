"""Cut a sub-architecture out of a trained backbone, keeping its most important parts and their weights.

A candidate of the search is a structured pruning of the backbone: the top-k blocks by block importance
(kept in their original order), the most important hidden channels (everywhere: embedding, norms, every
projection), per kept layer its most important KV groups and, inside each kept group, its most important
query heads, and its most important FFN channels. Every weight of the result is a slice of the backbone's;
nothing is initialised at random. A layer's attention mode is the target's choice: "local" keeps the
weights and attends over ``target.window`` keys, "skip" drops the attention sub-block.

RMSNorm over fewer hidden channels divides by the root-mean-square of the kept channels only. The kept
channels are the ones with the largest activations and carry most of the residual stream's energy, so that
RMS is about sqrt(dim / dim_kept) times the backbone's and every normalised activation comes out too small
by the inverse factor; ``prune`` multiplies the kept norm weights by sqrt(dim / dim_kept) to undo it. On an
early build of the default backbone this lowered the held-out loss before distillation on two of three pruned
sizes (by up to 0.16 nats) and after a 32k-token distillation on all three (by 0.001 to 0.06 nats). The
distillation that follows repairs the rest of the mismatch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from search.families.mobilellm_flash.importance import Importance
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig
from search.family import InvalidCandidate


def check_subarchitecture(backbone: ArchConfig, target: ArchConfig, kept_layers: list[int] | None = None) -> None:
    """Raise ``InvalidCandidate`` listing every reason ``target`` cannot be cut out of ``backbone``.

    ``kept_layers`` maps target layer i to the backbone layer it comes from; without it each target layer
    must fit every backbone layer (exact for a backbone whose layers are all alike). ``window``,
    ``max_context`` and ``block_repeat`` are the target's own choice: they change no weight's shape.
    """
    problems = []
    for field in ("vocab_size", "share_embeddings", "head_dim", "rope_theta", "norm_eps"):
        if getattr(target, field) != getattr(backbone, field):
            problems.append(f"{field} is {getattr(target, field)} but the backbone's is {getattr(backbone, field)}")
    if target.dim > backbone.dim:
        problems.append(f"dim {target.dim} is wider than the backbone's {backbone.dim}")
    if len(target.layers) > len(backbone.layers):
        problems.append(f"{len(target.layers)} layers is more than the backbone's {len(backbone.layers)}")
        target_layers = []  # which backbone layer each would come from is undefined
    else:
        target_layers = target.layers
    for i, layer in enumerate(target_layers):
        sources = [kept_layers[i]] if kept_layers is not None else range(len(backbone.layers))
        for source in sources:
            problem = _layer_problem(layer, backbone.layers[source])
            if problem:
                problems.append(f"layer {i} (backbone layer {source}): {problem}")
                break
    if problems:
        raise InvalidCandidate("not a sub-architecture of the backbone: " + "; ".join(problems))


def _layer_problem(layer: LayerConfig, source: LayerConfig) -> str | None:
    if layer.ffn_dim > source.ffn_dim:
        return f"ffn_dim {layer.ffn_dim} is wider than {source.ffn_dim}"
    if layer.attention == "skip":
        return None
    if source.attention == "skip":
        return "it needs attention weights the backbone layer does not have"
    if layer.n_kv_heads > source.n_kv_heads:
        return f"{layer.n_kv_heads} KV heads is more than {source.n_kv_heads}"
    ratio, source_ratio = layer.n_heads // layer.n_kv_heads, source.n_heads // source.n_kv_heads
    if ratio > source_ratio:
        return f"{ratio} query heads per KV head is more than {source_ratio}"
    return None


def prune(model: MobileLLM, importance: Importance, target: ArchConfig) -> MobileLLM:
    """A new ``MobileLLM(target)`` whose weights are the most important slices of ``model``'s (in eval mode)."""
    if importance.arch_hash != model.config.arch_hash():
        raise ValueError("the importance scores were computed for a different backbone")
    kept_layers = _top(importance.blocks, min(len(target.layers), len(model.config.layers))).tolist()
    check_subarchitecture(model.config, target, kept_layers)
    hidden = _top(importance.hidden, target.dim)
    norm_scale = math.sqrt(model.config.dim / target.dim)  # see the module docstring
    source = model.state_dict()
    state: dict[str, Tensor] = {
        "tok_embeddings.weight": source["tok_embeddings.weight"][:, hidden],
        "output.weight": source["output.weight"][:, hidden],
        "norm.weight": source["norm.weight"][hidden] * norm_scale,
    }
    for i, (layer, j) in enumerate(zip(target.layers, kept_layers, strict=True)):
        old, new = f"blocks.{j}.", f"blocks.{i}."
        state[new + "ffn_norm.weight"] = source[old + "ffn_norm.weight"][hidden] * norm_scale
        channels = _top(importance.ffn[j], layer.ffn_dim)
        state[new + "ffn.gate_proj.weight"] = source[old + "ffn.gate_proj.weight"][channels][:, hidden]
        state[new + "ffn.up_proj.weight"] = source[old + "ffn.up_proj.weight"][channels][:, hidden]
        state[new + "ffn.down_proj.weight"] = source[old + "ffn.down_proj.weight"][hidden][:, channels]
        if layer.attention != "skip":
            state[new + "attn_norm.weight"] = source[old + "attn_norm.weight"][hidden] * norm_scale
            groups, heads = _kept_heads(importance, j, model.config.layers[j], layer)
            q_rows, kv_rows = _head_rows(heads, target.head_dim), _head_rows(groups, target.head_dim)
            state[new + "attn.q_proj.weight"] = source[old + "attn.q_proj.weight"][q_rows][:, hidden]
            state[new + "attn.k_proj.weight"] = source[old + "attn.k_proj.weight"][kv_rows][:, hidden]
            state[new + "attn.v_proj.weight"] = source[old + "attn.v_proj.weight"][kv_rows][:, hidden]
            state[new + "attn.o_proj.weight"] = source[old + "attn.o_proj.weight"][hidden][:, q_rows]
    pruned = MobileLLM(target)
    pruned.load_state_dict({name: tensor.clone() for name, tensor in state.items()}, strict=True)
    return pruned.eval()


def _kept_heads(importance: Importance, j: int, source: LayerConfig, layer: LayerConfig) -> tuple[Tensor, Tensor]:
    """The kept KV groups and, in the same group order, each group's kept query heads (backbone indices).

    Query head h belongs to group h // R (R query heads per KV head), as ``Attention._attend`` stacks them.
    """
    ratio = source.n_heads // source.n_kv_heads
    groups = _top(importance.kv_groups[j], layer.n_kv_heads)
    per_group = layer.n_heads // layer.n_kv_heads
    heads = [g * ratio + _top(importance.heads[j][g * ratio : (g + 1) * ratio], per_group) for g in groups.tolist()]
    return groups, torch.cat(heads)


def _head_rows(heads: Tensor, head_dim: int) -> Tensor:
    """Rows of a projection that belong to ``heads`` (each head owns ``head_dim`` consecutive rows)."""
    return (heads[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)


def _top(scores: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` largest scores in ascending index order (all indices, in order, when k is all)."""
    return torch.topk(scores, k).indices.sort().values
