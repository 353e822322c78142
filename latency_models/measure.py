"""Measure one architecture: build it, export each phase's graph, check it against eager, time it.

Prefill and decode are separate graphs with static shapes, exactly what a phone would run: the
prompt of ``prefill_len`` tokens, and one token against a KV cache of ``decode_kv_len`` entries.
The result is one row per phase with the columns of ``hilnas_measurements``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latency_models.backends import Backend, PreparedGraph
from latency_models.protocol import (
    ProtocolConfig,
    Reference,
    Timing,
    drift_fields,
    machine_fingerprint,
    measure_prepared,
)
from search.families.mobilellm_flash.model import MobileLLM, example_inputs, phase_graph
from search.families.mobilellm_flash.space import ArchConfig, Workload

PHASES = ("prefill", "decode")


class OutputMismatch(RuntimeError):
    """The backend's outputs differ from eager PyTorch's: its timings would describe the wrong computation."""


def phase_shape(workload: Workload, phase: str) -> dict[str, int]:
    """The part of the workload a phase's graph depends on (the cache key's ``shape``)."""
    return {"prefill_len": workload.prefill_len} if phase == "prefill" else {"decode_kv_len": workload.decode_kv_len}


@dataclass
class ExportedGraph:
    """A phase's graph exported and checked against eager: ready to time."""

    prepared: PreparedGraph
    max_diff: float  # largest absolute difference of its outputs to eager PyTorch's
    exported_by: int = field(default_factory=os.getpid)  # the process that exported it (a worker, or this one)


@dataclass(frozen=True)
class ExportedFile:
    """A phase's program written and checked against eager by another process (an ``export_pool`` worker)."""

    artifact: Path
    export_s: float
    max_diff: float
    exported_by: int  # the worker's process id


@dataclass
class PhaseResult:
    row: dict[str, Any]
    prepared: PreparedGraph
    timing: Timing


def check_outputs(prepared: PreparedGraph, expected: tuple[torch.Tensor, ...], phase: str) -> float:
    """Largest absolute difference to eager; raises ``OutputMismatch`` beyond float32 round-off."""
    got = prepared.run()
    if len(got) != len(expected):
        raise OutputMismatch(f"the {phase} graph returned {len(got)} outputs, eager returned {len(expected)}")
    worst = 0.0
    for index, (out, ref) in enumerate(zip(got, expected, strict=True)):
        if out.shape != ref.shape or not torch.allclose(out, ref, rtol=1e-3, atol=1e-4):
            diff = (out - ref).abs().max().item() if out.shape == ref.shape else float("nan")
            raise OutputMismatch(f"output {index} of the {phase} graph differs from eager (max |diff| {diff:.3g})")
        worst = max(worst, (out - ref).abs().max().item())
    return worst


def export_checked(
    graph: nn.Module, inputs: tuple[torch.Tensor, ...], name: str, backend: Backend, workdir: Path
) -> ExportedGraph:
    """Export ``graph`` (a phase, or another family's component, called ``name``) into ``workdir`` and check its
    outputs against eager PyTorch's on ``inputs``."""
    graph = graph.eval()
    with torch.no_grad():  # not inference_mode: torch.export cannot trace tensors made in inference mode
        expected = tuple(graph(*inputs))
    prepared = backend.prepare(graph, inputs, name, workdir)
    return ExportedGraph(prepared, check_outputs(prepared, expected, name))


def export_phase(model: MobileLLM, workload: Workload, phase: str, backend: Backend, workdir: Path) -> ExportedGraph:
    """Export one phase's graph into ``workdir`` and check its outputs against eager."""
    return export_checked(phase_graph(model, phase), example_inputs(model, workload, phase), phase, backend, workdir)


def phase_program(arch: ArchConfig, workload: Workload, phase: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The graph of ``arch``'s ``phase`` and its example inputs, built from scratch (what an export worker
    lowers; the timing process rebuilds the same inputs to run the program on)."""
    model = build_model(arch)
    return phase_graph(model, phase), example_inputs(model, workload, phase)


def load_exported(
    exported: ExportedFile, inputs: tuple[torch.Tensor, ...], name: str, backend: Backend
) -> ExportedGraph:
    """Load a program another process exported, to run on ``inputs`` (the example inputs it was exported with)."""
    prepared = backend.load(exported.artifact, inputs, name)
    prepared.export_s = exported.export_s
    return ExportedGraph(prepared, exported.max_diff, exported.exported_by)


def measure_phase(
    model: MobileLLM,
    workload: Workload,
    phase: str,
    backend: Backend,
    device: str,
    protocol: ProtocolConfig,
    workdir: Path,
    stage: str | None = None,
    reference: Reference | None = None,
    exported: ExportedGraph | None = None,
) -> PhaseResult:
    """Export (unless ``exported`` already was, e.g. by an ``export_pool`` worker), verify and time one phase
    (drift-corrected by ``reference`` when given); the row carries the timing, its spread and the fingerprint.
    The caller (``measure_architecture``) has fixed the backend's threads before anything was loaded."""
    exported = exported or export_phase(model, workload, phase, backend, workdir)
    prepared = exported.prepared
    started = time.perf_counter()
    timing = measure_prepared(prepared, protocol, reference)
    row = {
        "arch_hash": model.config.arch_hash(),
        "architecture": model.config.model_dump(mode="json"),
        "device": device,
        "backend": backend.name,
        "phase": phase,
        "shape": phase_shape(workload, phase),
        "stage": stage,
        "median_ms": timing.median_ms,
        "p10_ms": timing.p10_ms,
        "p90_ms": timing.p90_ms,
        "cv": timing.cv,
        "n_samples": len(timing.samples_ms),
        "samples_ms": timing.samples_ms,
        "stable": timing.stable,
        "fingerprint": machine_fingerprint(backend.versions(), protocol),
        "extra": {
            "export_s": prepared.export_s,
            "measure_s": time.perf_counter() - started,
            "ci_half_width": timing.ci_half_width,
            "attempts": timing.attempts,
            "attempt_history": timing.history,
            "load_medians_ms": timing.load_medians_ms,
            "max_abs_diff_vs_eager": exported.max_diff,
            "export_pid": exported.exported_by,
            "timing_pid": os.getpid(),
            **drift_fields(timing, reference),
            "n_params": model.config.n_params(),
        },
    }
    return PhaseResult(row=row, prepared=prepared, timing=timing)


def build_model(arch: ArchConfig, seed: int = 0) -> MobileLLM:
    """The candidate with deterministic random weights (latency does not depend on their values)."""
    torch.manual_seed(seed)
    return MobileLLM(arch).eval()


def measure_architecture(
    arch: ArchConfig,
    workload: Workload,
    backend: Backend,
    device: str,
    protocol: ProtocolConfig,
    workdir: Path,
    phases: tuple[str, ...] = PHASES,
    stage: str | None = None,
    references: dict[str, Reference | None] | None = None,
    exported: dict[str, ExportedFile] | None = None,
) -> dict[str, PhaseResult]:
    """Every requested phase of one architecture, each exported into ``workdir`` (unless ``exported`` has it)
    and drift-corrected by its phase's entry in ``references`` (``reference.drift_reference`` of the kind
    ``reference.reference_kind(phase, arch)`` names) when given."""
    backend.set_threads(protocol.threads)  # before a program is loaded: resizing under one can deadlock
    model = build_model(arch)
    references, exported = references or {}, exported or {}
    results = {}
    for phase in phases:
        inputs = example_inputs(model, workload, phase)
        loaded = load_exported(exported[phase], inputs, phase, backend) if phase in exported else None
        reference = references.get(phase)
        results[phase] = measure_phase(
            model, workload, phase, backend, device, protocol, workdir, stage, reference, exported=loaded
        )
    return results
