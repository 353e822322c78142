"""Export workers: graphs lowered in other processes are timed here, failures come back whole, a crash is contained."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
import torch

from latency_models import measure, reference
from latency_models.backends import ExportFailure, get_backend
from latency_models.export_pool import ExportPool, _start_method, export_cost, flash_jobs
from latency_models.measure import PHASES, measure_architecture
from latency_models.protocol import ProtocolConfig
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig, Workload

FAST = ProtocolConfig(time_cap_s=0.3, min_repeats=5, max_repeats=50, ci_half_width=0.5, attempts=1, min_time_s=0.0)
WORKLOAD = Workload(prefill_len=12, decode_kv_len=16)


def tiny_arch(attention: str = "full") -> ArchConfig:
    layers = [LayerConfig(attention=attention, n_heads=2, n_kv_heads=1, ffn_dim=32)]
    return ArchConfig(vocab_size=64, dim=16, head_dim=8, layers=layers, share_embeddings=True)


def test_graphs_exported_by_workers_are_verified_there_and_timed_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    monkeypatch.setattr(measure, "export_phase", _no_export_here)
    monkeypatch.setattr(reference, "_programs", {})
    backend = get_backend("executorch-xnnpack")
    timing_dir = tmp_path / "timing"
    with ExportPool("executorch-xnnpack", threads=1, workers=2) as pool:
        pool.submit("tiny", flash_jobs(tiny_arch(), WORKLOAD, tmp_path / "exports"))
        reference.export_reference(pool, "decode")
        files = pool.take("tiny")
        assert set(files) == set(PHASES)
        for phase, exported in files.items():
            assert exported.artifact == tmp_path / "exports" / f"{phase}.pte" and exported.artifact.stat().st_size > 0
            assert exported.export_s > 0 and exported.max_diff < 1e-4  # checked against eager in the worker
            assert exported.exported_by != os.getpid()
        results = measure_architecture(tiny_arch(), WORKLOAD, backend, "cpu", FAST, timing_dir, exported=files)
        # The drift reference comes from a worker too: this process only loads it.
        drift = reference.drift_reference(backend, "cpu", FAST, kind="decode", exporter=pool)
    assert not timing_dir.exists()  # nothing was exported in this process
    for phase, result in results.items():
        assert result.prepared.artifact == files[phase].artifact
        extra = result.row["extra"]
        assert extra["export_s"] == files[phase].export_s and extra["max_abs_diff_vs_eager"] == files[phase].max_diff
        assert extra["export_pid"] == files[phase].exported_by and extra["timing_pid"] == os.getpid()
        assert result.row["median_ms"] > 0 and len(extra["load_medians_ms"]) == FAST.loads
    assert drift is not None and drift.baseline_ms > 0 and drift.program == reference.PROGRAMS["decode"]
    assert len(drift.run()) == 1 + 2 * 2  # logits and the two layers' new K and V


def _no_export_here(*_args: object) -> None:
    raise AssertionError("the timing process exported a graph")


def test_a_killed_worker_fails_the_exports_it_took_down_and_a_retry_exports_anew(tmp_path: Path) -> None:
    with ExportPool("executorch-xnnpack", threads=1, workers=1) as pool:
        pool.submit("doomed", flash_jobs(tiny_arch(), WORKLOAD, tmp_path / "doomed"))
        pool.start()
        workers = multiprocessing.active_children()
        assert workers
        for worker in workers:
            os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            pool.take("doomed")
        # both phases' failures were handed over, so the same candidate is exported again, by new workers
        pool.submit("doomed", flash_jobs(tiny_arch(), WORKLOAD, tmp_path / "retried"))
        files = pool.take("doomed")
    assert all(files[phase].artifact == tmp_path / "retried" / f"{phase}.pte" for phase in PHASES)


def test_an_export_failure_keeps_its_phase_and_operator_across_processes() -> None:
    failure = pickle.loads(pickle.dumps(ExportFailure("decode", "aten::foo", "no kernel")))
    assert (failure.phase, failure.operator) == ("decode", "aten::foo")
    assert str(failure) == "export of the decode graph failed at operator aten::foo: no kernel"


def test_workers_are_forked_only_while_no_other_thread_runs() -> None:
    code = "from latency_models.export_pool import _start_method; print(_start_method())"
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert alone == ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert _start_method() == "spawn"
    finally:
        release.set()
        thread.join()


def test_attention_blocks_make_a_graph_costlier_to_lower() -> None:
    assert export_cost(tiny_arch("skip")) < export_cost(tiny_arch("local")) == export_cost(tiny_arch("full"))
