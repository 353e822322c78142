"""PyTorch eager: the graph module itself, run under ``inference_mode``."""

from __future__ import annotations

import time
from importlib.metadata import version
from pathlib import Path

import torch
from torch import Tensor, nn

from latency_models.backends.base import Backend, PreparedGraph


class TorchEagerBackend(Backend):
    name = "torch-eager"

    def versions(self) -> dict[str, str]:
        return {"torch": version("torch")}

    def set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)

    def prepare(self, graph: nn.Module, inputs: tuple[Tensor, ...], phase: str, workdir: Path) -> PreparedGraph:
        start = time.perf_counter()
        graph = graph.eval()

        def run() -> list[Tensor]:
            with torch.inference_mode():
                return list(graph(*inputs))

        return PreparedGraph(run=run, export_s=time.perf_counter() - start)
