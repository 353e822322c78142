"""What a latency backend provides: turn a graph into something runnable and time-able."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch import Tensor, nn


class ExportFailure(RuntimeError):
    """A graph could not be exported or lowered; ``operator`` names the op that failed when known."""

    def __init__(self, phase: str, operator: str | None, detail: str) -> None:
        where = f" at operator {operator}" if operator else ""
        super().__init__(f"export of the {phase} graph failed{where}: {detail}")
        self.phase, self.operator, self.detail = phase, operator, detail

    def __reduce__(self) -> tuple:
        """Rebuilt from its three parts when it crosses a process boundary (an export worker's failure)."""
        return type(self), (self.phase, self.operator, self.detail)


_OPERATOR_PATTERNS = (
    re.compile(r"target=(?:torch\.ops\.)?([\w.]+)"),
    re.compile(r"(aten(?:::|\.)[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)"),
    re.compile(r"Missing operator: (?:\[\d+\] )?([\w:.]+)"),
)


def failing_operator(exc: BaseException) -> str | None:
    """The operator an export/lowering/loading error points at, read from its message."""
    text = f"{exc}\n{exc.__cause__ or ''}"
    for pattern in _OPERATOR_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


@dataclass
class PreparedGraph:
    """A graph ready to run on a backend: ``run`` executes it once on the example inputs; ``reload`` loads the
    same program afresh (new memory) and returns that load's ``run``."""

    run: Callable[[], list[Tensor]]
    export_s: float
    artifact: Path | None = None
    reload: Callable[[], Callable[[], list[Tensor]]] | None = None


class Backend(ABC):
    """A runtime that executes exported graphs (ExecuTorch with XNNPACK, PyTorch eager, ...)."""

    name: ClassVar[str]
    #: whether ``prepare`` writes a program file that ``load`` can open in another process (so that export
    #: workers can do the exporting)
    writes_programs: ClassVar[bool] = False

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Library versions that belong in a measurement's machine fingerprint."""

    @abstractmethod
    def set_threads(self, threads: int) -> None:
        """Fix the runtime's thread count (the protocol measures at a fixed count)."""

    @abstractmethod
    def prepare(self, graph: nn.Module, inputs: tuple[Tensor, ...], phase: str, workdir: Path) -> PreparedGraph:
        """Export/compile ``graph`` for ``inputs``; raise ``ExportFailure`` naming the failing operator."""

    def load(self, artifact: Path, inputs: tuple[Tensor, ...], phase: str) -> PreparedGraph:
        """Load a program ``prepare`` wrote to ``artifact`` (possibly in another process) to run on ``inputs``.
        Only backends whose prepared graphs are files can; raise ``ExportFailure`` when loading fails."""
        raise NotImplementedError(f"the {self.name} backend keeps no program file to load")
