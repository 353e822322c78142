"""Exporting graphs in worker processes while the device's CPU is not timing anything.

Lowering a graph to ExecuTorch is most of what a measurement costs (about 2.5 s per attention block against a few
seconds of timing) and uses one core, so ``workers`` processes lower that many graphs at once. Timing needs the
CPU to itself, so ``take`` waits until every export in flight has finished before it hands one over. The process
that times never exports, so its heap stays as a fresh process's (why that matters: ``protocol``).

The benchmark keeps a pool for its run; a device actor keeps one for its lifetime (``exporter``), so that
searches and ``hilnas latency`` time in a process that never exports either.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from types import TracebackType

from torch import Tensor, nn

from latency_models.backends import Backend, get_backend
from latency_models.measure import PHASES, ExportedFile, export_checked, phase_program
from search.families.mobilellm_flash.space import ArchConfig, Workload

#: Makes a graph and its example inputs; a module-level function or a ``partial`` of one, so that it pickles.
GraphBuilder = Callable[[], tuple[nn.Module, tuple[Tensor, ...]]]


@dataclass(frozen=True)
class ExportJob:
    """One program to lower in a worker: ``build`` makes its graph there, ``name`` is its phase or component."""

    build: GraphBuilder
    name: str
    workdir: Path
    cost: float = 1.0  # rough seconds to lower: the costliest start first


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


def _start_worker(parent: int) -> None:
    """A worker's start: one core each, since the workers share the machine, and an exit once its parent is
    gone (a device actor killed by Ray would otherwise leave its idle workers behind for good)."""
    import torch

    torch.set_num_threads(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _export(backend_name: str, threads: int, job: ExportJob) -> ExportedFile:
    """In a worker: export and check one graph; only the file's path and figures travel back."""
    graph, inputs = job.build()
    exported = export_checked(graph, inputs, job.name, _worker_backend(backend_name, threads), job.workdir)
    prepared = exported.prepared
    return ExportedFile(prepared.artifact, prepared.export_s, exported.max_diff, exported.exported_by)


def flash_job(arch: ArchConfig, workload: Workload, workdir: Path, phase: str, name: str | None = None) -> ExportJob:
    """The export job of one phase graph of a MobileLLM-Flash architecture, named after its phase unless ``name``
    says otherwise (a drift reference is named by its kind: every decode rung is a decode step)."""
    return ExportJob(partial(phase_program, arch, workload, phase), name or phase, workdir, export_cost(arch))


def flash_jobs(arch: ArchConfig, workload: Workload, workdir: Path, phases: Iterable[str] = PHASES) -> list[ExportJob]:
    """The export jobs of a MobileLLM-Flash candidate's phase graphs."""
    return [flash_job(arch, workload, workdir, phase) for phase in phases]


class ExportPool:
    """Worker processes that export candidates' graphs (MobileLLM-Flash phases, EdgeTAM components) ahead of
    their timing.

    ``submit`` queues a candidate's export jobs (a job already queued under the same key and name is not queued
    again); ``take`` starts every queued export (``start``: the costliest first, so that no worker is left with a
    long one at the end while the others idle), waits for all of them, then returns that candidate's files,
    raising its export's error if it failed. A worker that dies (a crash inside the exporter) takes every export
    then queued with it (``BrokenProcessPool``); the exports submitted after that run in new workers.
    """

    def __init__(self, backend_name: str, threads: int, workers: int | None = None) -> None:
        self.backend_name, self.threads = backend_name, threads
        self.workers = workers or usable_cores()
        self._executor = self._start()
        self._queued: dict[tuple[Hashable, str], ExportJob] = {}
        self._jobs: dict[tuple[Hashable, str], Future[ExportedFile]] = {}

    def _start(self) -> ProcessPoolExecutor:
        method = _start_method()
        context = multiprocessing.get_context(method)
        executor = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
        )
        if method == "fork":  # a forking pool starts all its workers at its first task: now, while no thread runs
            executor.submit(os.getpid)
        return executor

    def submit(self, key: Hashable, jobs: Iterable[ExportJob]) -> None:
        for job in jobs:
            if (key, job.name) not in self._jobs:
                self._queued.setdefault((key, job.name), job)

    def start(self) -> None:
        """Start every queued export now, the costliest first, without waiting for them."""
        for slot, job in sorted(self._queued.items(), key=lambda item: -item[1].cost):
            self._jobs[slot] = self._submit(job)
        self._queued.clear()

    def _submit(self, job: ExportJob) -> Future[ExportedFile]:
        try:
            return self._executor.submit(_export, self.backend_name, self.threads, job)
        except BrokenProcessPool:  # a worker died since the last submit: start new ones
            self._executor.shutdown(cancel_futures=True)
            self._executor = self._start()
            return self._executor.submit(_export, self.backend_name, self.threads, job)

    def take(self, key: Hashable, names: Iterable[str] = PHASES) -> dict[str, ExportedFile]:
        """``key``'s exported files by phase (or component), once no export is running (the CPU is then free to
        time them)."""
        self.start()
        wait(self._jobs.values())
        # all of them handed over before any raises: a retry must export anew, not meet this attempt's failure
        futures = {name: self._jobs.pop((key, name)) for name in names}
        return {name: future.result() for name, future in futures.items()}

    def close(self) -> None:
        """Cancel what is queued and let the workers exit in the background (that takes seconds)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ExportPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


@lru_cache(maxsize=4)
def _lifelong_pool(backend_name: str, threads: int, workers: int | None) -> ExportPool:
    return ExportPool(backend_name, threads, workers)


def exporter(backend: Backend, threads: int, workers: int | None) -> ExportPool | None:
    """The export pool this process keeps for its lifetime (a device actor measures candidate after candidate),
    started at first use; None where programs are exported in the timing process: ``workers`` is 0, or the
    backend writes no program another process could export (PyTorch eager)."""
    if workers == 0 or not backend.writes_programs:
        return None
    return _lifelong_pool(backend.name, threads, workers)
