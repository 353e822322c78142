"""Latency features of EdgeTAM architectures: FLOPs, bytes and operator count of each component graph.

The latency predictors of ``latency_models`` are fitted on these (``EDGETAM_FEATURES``), one predictor per
measured component. The work is counted by running the exact graphs that ``latency.py`` times, once, under
a dispatch mode that counts operators, the bytes each reads and writes (views are free and not counted)
and their FLOPs by PyTorch's own formulas (``torch.utils.flop_counter.flop_registry``, the table behind
``FlopCounterMode``, which itself costs three times as long because of its per-module bookkeeping). At
these model sizes much of a frame's time is per-operator overhead, so the operator count matters beside FLOPs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from latency_models.predictors import FeatureSet
from search.families.edgetam.latency import COMPONENTS, component_graphs
from search.families.edgetam.model import EdgeTAM, EdgeTAMConfig

PHASE_PREFIX = "edgetam_"
PHASES = tuple(f"{PHASE_PREFIX}{component}" for component in COMPONENTS)
#: Architecture settings the predictors' learned corrections may use beside the counted work.
KNOBS = ("resolution", "encoder_width", "encoder_depth", "attention_layers", "memory_tokens")


class _WorkCounter(TorchDispatchMode):
    """Counts the non-view operators a graph runs, the bytes of their tensors and their FLOPs.

    An operator without a FLOP formula is decomposed when it can be (CPU attention becomes matmuls),
    as ``FlopCounterMode`` does, so that its FLOPs are counted too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.operators = 0
        self.bytes = 0
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in flop_registry:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if not func.is_view:
            self.operators += 1
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            self.bytes += sum(t.numel() * t.element_size() for t in tensors)
        if packet in flop_registry:
            self.flops += flop_registry[packet](*args, **kwargs, out_val=out)
        return out


@lru_cache(maxsize=1024)
def component_work(config: EdgeTAMConfig) -> dict[str, dict[str, float]]:
    """{component: {"flops", "bytes", "ops"}} of the five graphs at the config's full bank (fresh weights)."""
    torch.manual_seed(0)
    model = EdgeTAM(config)
    work = {}
    with torch.no_grad():
        for name, component in component_graphs(model).items():
            with _WorkCounter() as counter:
                component.graph(*component.inputs)
            work[name] = {"flops": float(counter.flops), "bytes": float(counter.bytes), "ops": float(counter.operators)}
    work["params"] = {"count": float(model.parameter_count())}
    return work


def config_of(architecture: dict[str, Any]) -> EdgeTAMConfig:
    """The config of a measurement row's ``architecture`` (the family drops settings that do not apply)."""
    return EdgeTAMConfig(**architecture)


def phase_features(config: EdgeTAMConfig, phase: str) -> dict[str, float]:
    """One feature row: the phase's counted work (also as the roofline's single kind) and the knobs."""
    work = component_work(config)
    own = work[phase.removeprefix(PHASE_PREFIX)]
    return {
        **own,
        "work_flops": own["flops"],
        "work_bytes": own["bytes"],
        "params": work["params"]["count"],
        "resolution": float(config.resolution),
        "encoder_width": float(config.encoder_width),
        "encoder_depth": float(config.encoder_depth),
        "attention_layers": float(config.attention_layers),
        "memory_tokens": float((config.memory_frames + 1) * config.tokens_per_frame() + config.memory_frames),
    }


def feature_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One feature row per measurement row (each carries ``architecture`` and ``phase``)."""
    return pd.DataFrame([phase_features(config_of(row["architecture"]), row["phase"]) for row in rows])


EDGETAM_FEATURES = FeatureSet(
    frame=feature_frame,
    additive=("flops", "bytes", "ops"),
    log=("flops", "bytes", "ops", *KNOBS),
    kinds=("work",),
    counts=("ops",),
)
