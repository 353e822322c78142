"""ExecuTorch with the XNNPACK delegate: torch.export -> edge -> XNNPACK partitions -> ``.pte`` -> runtime.

This is the path a phone runs: the ``.pte`` file written here is what an app would ship, and it
is executed by ExecuTorch's own runtime (``executorch.runtime``), not by PyTorch.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch
from torch import Tensor, nn

from hilnas.errors import UserError
from latency_models.backends.base import Backend, ExportFailure, PreparedGraph, failing_operator


def _executorch():
    """The ExecuTorch modules, or a ``UserError`` naming the package to install."""
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower
        from executorch.exir.passes.constant_prop_pass import constant_prop_pass
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise UserError(
            "The executorch-xnnpack backend needs the executorch package: pip install 'executorch>=1.0,<2'."
        ) from exc
    return XnnpackPartitioner, EdgeCompileConfig, to_edge_transform_and_lower, constant_prop_pass, portable_lib, Runtime


def _missing_kernels(program, runtime) -> list[str]:  # noqa: ANN001 - ExecuTorch objects
    """Operators left outside the XNNPACK partitions that the runtime cannot execute.

    The runtime reports such an operator only in its log when loading fails, so it is checked
    here, where the failure can name it.
    """
    registered = set(runtime.operator_registry.operator_names)
    needed = []
    for plan in program.executorch_program.execution_plan:
        for op in plan.operators:
            name = f"{op.name}.{op.overload}" if op.overload else op.name
            if name not in registered:
                needed.append(name)
    return needed


class ExecuTorchXnnpackBackend(Backend):
    name = "executorch-xnnpack"
    writes_programs = True

    def __init__(self) -> None:
        self._modules = _executorch()

    def versions(self) -> dict[str, str]:
        return {"torch": version("torch"), "executorch": version("executorch")}

    def set_threads(self, threads: int) -> None:
        """Resize ExecuTorch's thread pool, only when the size changes: resetting a pool that loaded
        programs are using can deadlock, so callers set threads before preparing graphs."""
        portable_lib = self._modules[4]
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)

    def lower(
        self, methods: dict[str, tuple[nn.Module, tuple[Tensor, ...]]], label: str, constants: dict | None = None
    ):  # noqa: ANN201 - an ExecuTorch program manager
        """Export each (graph, example inputs) as a method of ONE program, lowered to XNNPACK.

        ``constants`` become constant methods of the program (metadata an app reads, e.g. the
        context length). ``label`` names the work in an ``ExportFailure``.
        """
        partitioner, compile_config, lower, constant_prop, _, runtime = self._modules
        try:
            with warnings.catch_warnings():
                # torch.export and ExecuTorch warn about their own internal deprecations on every export;
                # one per graph would bury a search's progress.
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                program = self._lower(methods, constants)
        except Exception as exc:  # any exporter/lowering error is reported with its operator
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportFailure(label, failing_operator(exc), f"{type(exc).__name__}: {detail}") from exc
        missing = _missing_kernels(program, runtime.get())
        if missing:
            raise ExportFailure(label, missing[0], f"the ExecuTorch runtime has no kernel for {', '.join(missing)}")
        return program

    def _lower(self, methods: dict[str, tuple[nn.Module, tuple[Tensor, ...]]], constants: dict | None):  # noqa: ANN202
        partitioner, compile_config, lower, constant_prop, _, _ = self._modules
        exported = {}
        for name, (graph, inputs) in methods.items():
            program = torch.export.export(graph.eval(), inputs, strict=False)
            # Masks and rotary tables built from arange fold to constants instead of running per call.
            exported[name] = constant_prop(program)
        return lower(
            exported,
            partitioner=[partitioner()],
            constant_methods=constants,
            compile_config=compile_config(_check_ir_validity=False),
        ).to_executorch()

    def prepare(self, graph: nn.Module, inputs: tuple[Tensor, ...], phase: str, workdir: Path) -> PreparedGraph:
        start = time.perf_counter()
        program = self.lower({"forward": (graph, inputs)}, label=phase)
        workdir.mkdir(parents=True, exist_ok=True)
        artifact = workdir / f"{phase}.pte"
        artifact.write_bytes(program.buffer)
        prepared = self.load(artifact, inputs, phase)
        prepared.export_s = time.perf_counter() - start
        return prepared

    def load(self, artifact: Path, inputs: tuple[Tensor, ...], phase: str) -> PreparedGraph:
        runtime = self._modules[5]
        arguments = list(inputs)

        def load() -> Callable[[], list[Tensor]]:
            method = runtime.get().load_program(artifact).load_method("forward")
            return lambda: list(method.execute(arguments))

        try:
            run = load()
        except Exception as exc:  # a kernel missing from the runtime shows up only at load time
            raise ExportFailure(phase, failing_operator(exc), f"{type(exc).__name__}: {exc}") from exc
        return PreparedGraph(run=run, export_s=0.0, artifact=artifact, reload=load)
