"""Exporting graphs in worker processes while the device's CPU is not timing anything.

Lowering a graph to ExecuTorch is most of what a measurement costs (about 2.5 s per attention block against a few
seconds of timing) and uses one core, so ``workers`` processes lower that many graphs at once. Timing needs the
CPU to itself, so ``take`` waits until every export in flight has finished before it hands one over. The process
that times never exports, so its heap stays as a fresh process's (why that matters: ``protocol``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Hashable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from pathlib import Path
from types import TracebackType

from latency_models.backends import Backend, get_backend
from latency_models.measure import PHASES, ExportedFile, build_model, export_phase
from search.families.mobilellm_flash.space import ArchConfig, Workload

Job = tuple[ArchConfig, Workload, str, Path]  # what to export: architecture, shape, phase, where to write


def export_cost(arch: ArchConfig) -> float:
    """Roughly how long a graph of ``arch`` takes to lower, in seconds on the development machine: lowering passes
    over every node, and an attention block has about four times the nodes of a block without one."""
    attention = sum(layer.attention != "skip" for layer in arch.executed_layers())
    return 1.5 + 2.5 * attention + 0.6 * (len(arch.executed_layers()) - attention)


def usable_cores() -> int:
    """The cores this process may run on (the affinity mask, where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _start_method() -> str:
    """fork where there is one and this process runs no other Python thread, else spawn.

    A forked worker starts with torch and ExecuTorch already imported, about 6 s sooner than a spawned one (a
    --quick benchmark's whole export wave took 42 s instead of 47.5 s). PyTorch's DataLoader forks from such
    processes too (torch re-creates its thread pools in the child). A Python thread (Ray's, a progress bar's) may
    hold a lock that the child would inherit held forever, so then the workers are spawned."""
    fork = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    return "fork" if fork else "spawn"


@lru_cache(maxsize=4)
def _worker_backend(name: str, threads: int) -> Backend:
    backend = get_backend(name)
    backend.set_threads(threads)
    return backend


def _one_core() -> None:
    """A worker's start: one core each, since the workers share the machine."""
    import torch

    torch.set_num_threads(1)


def _export(backend_name: str, threads: int, job: Job) -> ExportedFile:
    """In a worker: export and check one phase's graph; only the file's path and figures travel back."""
    arch, workload, phase, workdir = job
    exported = export_phase(build_model(arch), workload, phase, _worker_backend(backend_name, threads), workdir)
    return ExportedFile(exported.prepared.artifact, exported.prepared.export_s, exported.max_diff)


class ExportPool:
    """Worker processes that export candidates' phase graphs ahead of their timing.

    ``submit`` queues a candidate's graphs (a key seen before is not queued again); ``take`` starts every queued
    export (``start``: the costliest first, so that no worker is left with a long one at the end while the others
    idle), waits for all of them, then returns that candidate's files, raising its export's error if it failed.
    A worker that dies (a crash inside the exporter) takes every export then queued with it
    (``BrokenProcessPool``); the exports submitted after that run in new workers.
    """

    def __init__(self, backend_name: str, threads: int, workers: int | None = None) -> None:
        self.backend_name, self.threads = backend_name, threads
        self.workers = workers or usable_cores()
        self._executor = self._start()
        self._queued: dict[tuple[Hashable, str], Job] = {}
        self._jobs: dict[tuple[Hashable, str], Future[ExportedFile]] = {}

    def _start(self) -> ProcessPoolExecutor:
        method = _start_method()
        context = multiprocessing.get_context(method)
        executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_one_core)
        if method == "fork":  # a forking pool starts all its workers at its first task: now, while no thread runs
            executor.submit(os.getpid)
        return executor

    def submit(
        self, key: Hashable, arch: ArchConfig, workload: Workload, workdir: Path, phases: tuple[str, ...] = PHASES
    ) -> None:
        for phase in phases:
            if (key, phase) not in self._jobs:
                self._queued.setdefault((key, phase), (arch, workload, phase, workdir))

    def start(self) -> None:
        """Start every queued export now, the costliest first, without waiting for them."""
        for slot, job in sorted(self._queued.items(), key=lambda item: -export_cost(item[1][0])):
            self._jobs[slot] = self._submit(job)
        self._queued.clear()

    def _submit(self, job: Job) -> Future[ExportedFile]:
        try:
            return self._executor.submit(_export, self.backend_name, self.threads, job)
        except BrokenProcessPool:  # a worker died since the last submit: start new ones
            self._executor.shutdown(cancel_futures=True)
            self._executor = self._start()
            return self._executor.submit(_export, self.backend_name, self.threads, job)

    def take(self, key: Hashable, phases: tuple[str, ...] = PHASES) -> dict[str, ExportedFile]:
        """``key``'s exported files by phase, once no export is running (the CPU is then free to time them)."""
        self.start()
        wait(self._jobs.values())
        return {phase: self._jobs.pop((key, phase)).result() for phase in phases}

    def close(self) -> None:
        """Cancel what is queued and let the workers exit in the background (that takes seconds)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ExportPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
