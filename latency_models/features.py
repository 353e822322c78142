"""Architecture features for latency prediction: FLOPs and bytes per kind of work, as implemented.

The counts follow ``model.py`` exactly (e.g. a local layer's prefill costs O(T * window) through
chunking; a local layer's decode reads at most window - 1 cached keys), so that a predictor sees
the work the graph really does. Weights are float32 (4 bytes).

``streamed_bytes`` is what one call must read from wherever it lives: every executed layer's weights,
the head's and the KV cache. Once it outgrows what the caches hold for the process, each further byte
comes from main memory and costs more (the layerwise model's cache knee).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from search.families.mobilellm_flash.space import ArchConfig, Workload

BYTES = 4
#: Work kinds with their own FLOP and byte counts (the roofline sums a bound per kind).
KINDS = ("attn_proj", "attn_score_full", "attn_score_local", "ffn", "head", "norm")


def _score_keys(arch: ArchConfig, mode: str, phase: str, workload: Workload) -> tuple[int, int]:
    """(query rows per head, keys per query row) of one attention layer as the model computes it."""
    if phase == "decode":
        cached = workload.decode_kv_len if mode == "full" else min(workload.decode_kv_len, arch.window - 1)
        return 1, cached + 1
    t = workload.prefill_len
    if mode == "local" and t > arch.window:
        return math.ceil(t / arch.window) * arch.window, 2 * arch.window
    return t, t


def phase_features(arch: ArchConfig, workload: Workload, phase: str) -> dict[str, float]:
    """FLOPs/bytes per work kind plus counts, for the prefill or the decode graph."""
    t = workload.prefill_len if phase == "prefill" else 1
    c, d = arch.dim, arch.head_dim
    work = {f"{kind}_{unit}": 0.0 for kind in KINDS for unit in ("flops", "bytes")}
    counts = {"n_full": 0, "n_local": 0, "n_skip": 0, "softmax_elems": 0.0, "kv_bytes": 0.0}
    weight_bytes = BYTES * c * arch.vocab_size  # the head's
    for layer in arch.executed_layers():
        f = layer.ffn_dim
        weight_bytes += BYTES * 3 * c * f
        work["ffn_flops"] += 2 * t * 3 * c * f
        work["ffn_bytes"] += BYTES * (3 * c * f + t * (2 * c + 3 * f))
        work["norm_flops"] += 4 * t * c
        work["norm_bytes"] += BYTES * 2 * t * c
        if layer.attention == "skip":
            counts["n_skip"] += 1
            continue
        q_width, kv_width = layer.n_heads * d, layer.n_kv_heads * d
        weight_bytes += BYTES * c * (2 * q_width + 2 * kv_width)
        work["attn_proj_flops"] += 2 * t * c * (2 * q_width + 2 * kv_width)
        work["attn_proj_bytes"] += BYTES * (c * (2 * q_width + 2 * kv_width) + t * (2 * c + 2 * q_width + 2 * kv_width))
        work["norm_flops"] += 4 * t * c
        work["norm_bytes"] += BYTES * 2 * t * c
        rows, keys = _score_keys(arch, layer.attention, phase, workload)
        score_flops = 2 * 2 * layer.n_heads * rows * keys * d
        # Keys/values read: every key once, except chunked local prefill, which reads each chunk twice.
        kv_read = BYTES * 2 * kv_width * (2 * rows if phase == "prefill" and rows != keys else keys)
        score_bytes = BYTES * (2 * layer.n_heads * rows * keys + rows * q_width) + kv_read
        work[f"attn_score_{layer.attention}_flops"] += score_flops
        work[f"attn_score_{layer.attention}_bytes"] += score_bytes
        counts["softmax_elems"] += layer.n_heads * rows * keys
        counts["kv_bytes"] += BYTES * 2 * kv_width * keys
        counts[f"n_{layer.attention}"] += 1
    work["head_flops"] = 2 * c * arch.vocab_size
    work["head_bytes"] = BYTES * c * arch.vocab_size
    flops = sum(work[f"{kind}_flops"] for kind in KINDS)
    bytes_moved = sum(work[f"{kind}_bytes"] for kind in KINDS)
    return {
        **work,
        **{k: float(v) for k, v in counts.items()},
        "flops": float(flops),
        "bytes": float(bytes_moved),
        "streamed_bytes": float(weight_bytes + counts["kv_bytes"]),
        "n_layers": float(arch.depth),
        "n_attention": float(counts["n_full"] + counts["n_local"]),
        "dim": float(c),
        "tokens": float(workload.prefill_len if phase == "prefill" else workload.decode_kv_len),
        "params": float(arch.n_params()),
    }


def feature_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One feature row per measurement row (which carries ``architecture``, ``shape`` and ``phase``)."""
    records = []
    for row in rows:
        arch = ArchConfig.model_validate(row["architecture"])
        shape = row["shape"]
        workload = Workload(prefill_len=shape.get("prefill_len", 1), decode_kv_len=shape.get("decode_kv_len", 1))
        records.append(phase_features(arch, workload, row["phase"]))
    return pd.DataFrame.from_records(records)
