"""PyTorch eager: the graph module itself, run under ``inference_mode``."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
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

        def runner(module: nn.Module) -> Callable[[], list[Tensor]]:
            def run() -> list[Tensor]:
                with torch.inference_mode():
                    return list(module(*inputs))

            return run

        # A reload is a copy of the module: its weights in new memory, as a fresh load of a program would be.
        return PreparedGraph(
            run=runner(graph),
            export_s=time.perf_counter() - start,
            reload=lambda: runner(copy.deepcopy(graph)),
        )
