"""Per-frame latency of an EdgeTAM model, split into its four components, through the shared latency backends.

Each component becomes its own static-shape graph, exactly what a phone would run once per frame in the
steady state of tracking one object with a full bank (the prompted frame plus ``memory_frames`` recent
frames): the image encoder, the memory encoder (mask fusion plus the variant's compression), memory
attention over the bank's tokens, and the mask decoder; a fifth graph is the whole per-frame step.
Graphs are exported by a ``latency_models`` backend (ExecuTorch + XNNPACK, or PyTorch eager), checked
against eager outputs, and timed with the shared measurement protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from latency_models.backends import Backend
from latency_models.export_pool import ExportJob
from latency_models.measure import ExportedFile, ExportedGraph, export_checked, load_exported
from latency_models.protocol import (
    ProtocolConfig,
    Reference,
    Timing,
    drift_fields,
    machine_fingerprint,
    measure_prepared,
)
from search.families.edgetam.model import EdgeTAM, EdgeTAMConfig, MemoryEntry

COMPONENTS = ("image_encoder", "memory_encoder", "memory_attention", "mask_decoder", "frame")


class _Bank(nn.Module):
    """The bank's constant parts (position encodings with temporal slots, places, biases) as buffers."""

    def __init__(self, model: EdgeTAM, bank: list[tuple[int, MemoryEntry]]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("positions", torch.cat([e.positions + model.temporal[s] for s, e in bank], dim=1).detach())
        self.register_buffer("coordinates", torch.cat([e.coordinates for _, e in bank]))
        self.register_buffer("bias", torch.cat([e.score_bias for _, e in bank]))

    def attend(self, features: Tensor, memory: Tensor) -> Tensor:
        return self.model.memory_attention(features, memory, self.positions, self.coordinates, self.bias)


class ImageEncoderGraph(nn.Module):
    def __init__(self, model: EdgeTAM) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.encode_image(frame)


class MemoryEncoderGraph(nn.Module):
    def __init__(self, model: EdgeTAM) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, mask: Tensor, pointer: Tensor) -> tuple[Tensor]:
        return (self.model.encode_memory(features, mask, pointer).tokens,)


class MemoryAttentionGraph(_Bank):
    def forward(self, features: Tensor, memory: Tensor) -> tuple[Tensor]:
        return (self.attend(features, memory),)


class MaskDecoderGraph(nn.Module):
    def __init__(self, model: EdgeTAM) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, high_res: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.model.decode(features, high_res)


class FrameGraph(_Bank):
    """One whole tracking step: encode, attend to the bank, decode, and encode the new memory."""

    def forward(self, frame: Tensor, memory: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features, high_res = self.model.encode_image(frame)
        logits, scores, pointer = self.model.decode(self.attend(features, memory), high_res)
        return logits, scores, self.model.encode_memory(features, torch.sigmoid(logits), pointer).tokens


@dataclass
class ComponentGraph:
    graph: nn.Module
    inputs: tuple[Tensor, ...]


@torch.no_grad()  # not inference_mode: its tensors cannot be traced by torch.export
def component_graphs(model: EdgeTAM) -> dict[str, ComponentGraph]:
    """The five graphs with example inputs at the model's full bank (batch of one object)."""
    model.eval()
    config = model.config
    generator = torch.Generator().manual_seed(0)
    frame = torch.randn(1, 3, config.resolution, config.resolution, generator=generator)
    features, high_res = model.encode_image(frame)
    mask = torch.rand(1, 1, config.resolution, config.resolution, generator=generator)
    pointer = torch.randn(1, config.dim, generator=generator)
    bank = [(0, model.encode_memory(features, mask, None))]
    bank += [(slot, model.encode_memory(features, mask, pointer)) for slot in range(1, config.memory_frames + 1)]
    memory = torch.cat([entry.tokens for _, entry in bank], dim=1)
    return {
        "image_encoder": ComponentGraph(ImageEncoderGraph(model), (frame,)),
        "memory_encoder": ComponentGraph(MemoryEncoderGraph(model), (features, mask, pointer)),
        "memory_attention": ComponentGraph(MemoryAttentionGraph(model, bank), (features, memory)),
        "mask_decoder": ComponentGraph(MaskDecoderGraph(model), (features, high_res)),
        "frame": ComponentGraph(FrameGraph(model, bank), (frame, memory)),
    }


def component_program(config: EdgeTAMConfig, name: str) -> tuple[nn.Module, tuple[Tensor, ...]]:
    """Component ``name`` of a fresh model of ``config`` and its example inputs (what an export worker lowers;
    the weights are seeded, so the timing process rebuilds the same inputs)."""
    torch.manual_seed(0)
    component = component_graphs(EdgeTAM(config))[name]
    return component.graph, component.inputs


def component_jobs(config: EdgeTAMConfig, workdir: Path) -> list[ExportJob]:
    """The export jobs of every component graph of a model of ``config``."""
    return [ExportJob(partial(component_program, config, name), name, workdir) for name in COMPONENTS]


def prepare_components(
    model: EdgeTAM,
    backend: Backend,
    workdir: Path,
    names: tuple[str, ...] | list[str] = COMPONENTS,
    exported: dict[str, ExportedFile] | None = None,
) -> dict[str, ExportedGraph]:
    """The named component graphs of ``model`` exported into ``workdir`` and checked against eager, or loaded
    from ``exported`` where another process (an export worker) already did that."""
    exported = exported or {}
    prepared = {}
    for name, component in component_graphs(model).items():
        if name in exported:
            prepared[name] = load_exported(exported[name], component.inputs, name, backend)
        elif name in names:
            prepared[name] = export_checked(component.graph, component.inputs, name, backend, workdir)
    return prepared


@dataclass
class ComponentResult:
    timing: Timing
    export_s: float
    max_abs_diff: float


def measure_components(
    model: EdgeTAM,
    backend: Backend,
    protocol: ProtocolConfig,
    workdir: Path,
    reference: Reference | None = None,
    exported: dict[str, ExportedFile] | None = None,
) -> dict[str, ComponentResult]:
    """Export (unless ``exported`` has them), verify against eager and time every component graph of ``model``
    on ``backend`` (drift-corrected by ``reference`` when given).

    Threads are fixed before any graph is prepared: resizing ExecuTorch's pool under a loaded XNNPACK
    program crashes the process (the memory encoder's did, with a segmentation fault).
    """
    backend.set_threads(protocol.threads)
    results = {}
    for name, component in prepare_components(model, backend, workdir, exported=exported).items():
        timing = measure_prepared(component.prepared, protocol, reference)
        results[name] = ComponentResult(timing, component.prepared.export_s, component.max_diff)
    return results


def measurement_rows(
    results: dict[str, ComponentResult],
    arch_hash: str,
    architecture: dict[str, Any],
    shape: dict[str, Any],
    device: str,
    backend: Backend,
    protocol: ProtocolConfig,
    reference: Reference | None = None,
) -> list[dict[str, Any]]:
    """Rows for ``hilnas_measurements``: one per component, phase ``edgetam_<component>``."""
    fingerprint = machine_fingerprint(backend.versions(), protocol)
    return [
        {
            "arch_hash": arch_hash,
            "architecture": architecture,
            "device": device,
            "backend": backend.name,
            "phase": f"edgetam_{name}",
            "shape": shape,
            "median_ms": result.timing.median_ms,
            "p10_ms": result.timing.p10_ms,
            "p90_ms": result.timing.p90_ms,
            "cv": result.timing.cv,
            "n_samples": len(result.timing.samples_ms),
            "samples_ms": result.timing.samples_ms,
            "stable": result.timing.stable,
            "fingerprint": fingerprint,
            "extra": {
                "export_s": result.export_s,
                "max_abs_diff": result.max_abs_diff,
                "load_medians_ms": result.timing.load_medians_ms,
                **drift_fields(result.timing, reference),
            },
        }
        for name, result in results.items()
    ]
