"""Activation outlier statistics at every block linear's input (what the quantizer actually sees).

max/RMS says how far the largest entry sticks out of the typical scale (what ruins a per-token
min/max grid); kurtosis (Pearson, 3 for a Gaussian) of all entries says how heavy the tails are.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from scipy.stats import kurtosis
from torch import Tensor

from search.families.quant_rotation.qmodel import QuantizedModel


@torch.no_grad()
def activation_stats(model: QuantizedModel, sequences: Tensor) -> dict[str, dict[str, float]]:
    """Per linear name: ``max_over_rms`` and ``kurtosis`` of its input over ``sequences``."""
    seen: dict[str, list[Tensor]] = defaultdict(list)

    def record(name: str, x: Tensor) -> None:
        seen[name].append(x.reshape(-1, x.shape[-1]).double())

    layers = model.quant_linears()
    for layer in layers:
        layer.observer = record
    try:
        model(sequences)
    finally:
        for layer in layers:
            layer.observer = None
    stats = {}
    for name, chunks in seen.items():
        values = torch.cat(chunks)
        rms = values.pow(2).mean().sqrt().item()
        stats[name] = {
            "max_over_rms": values.abs().max().item() / rms,
            "kurtosis": float(kurtosis(values.flatten().numpy(), fisher=False)),
        }
    return stats
