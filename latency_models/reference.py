"""The drift references: fixed MobileLLM graphs timed in blocks between the candidate's (see ``protocol``).

The ``prefill`` reference (a short prompt through two layers) is compute-bound, like a prefill or an EdgeTAM
component. A decode step is bound by memory, and drift on a shared host is not the same for both kinds: when
another tenant fills the caches or the memory bus, a decode step slows more than a prompt does. A probe timed
six decode graphs for 14 rounds: divided by the prefill reference they moved 3.3% from one round to the next,
and divided by a decode reference 2.2% (raw: 5.2%).

Nor is it the same for every decode step: how a slow moment hits one depends on where its weights live, in
the caches or in main memory. So decode references form a ladder of rungs of 0.75M, 10.6M and 24.6M parameters
(3, 42 and 98 MB of float32 weights), and a decode step is timed beside the largest rung at most
``RUNG_REACH`` times its own size (``reference_kind``; the smallest when none is). ``benchmarks.drift_references``
measures how well each rung tracks decode graphs of every size: in the probe that set the rule, eight graphs of
1M-31M parameters timed beside the rungs in the same moments for 16 rounds varied by 3.3-11.5% (CV) raw, by
1.5-9.3% divided by the smallest rung, and by 1.2-4.7% divided by the rung the rule picks (a 10.4M-parameter
graph: raw 11.5%, smallest rung 9.3%, 10.6M rung 1.5%). A 3.1M rung tracked graphs of 2-8M parameters no
better than the smallest one did, so there is none.

A reference's *baseline* is its typical time on the device. Drift-corrected latencies are ratios to the
reference times the baseline, so every process that measures a device must agree on it: with a store,
the first baseline stored for (device, backend, threads, program) is used by everyone after; without
one (a benchmark in one process) it is measured once per process.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from db.models import ReferenceBaseline
from db.session import session_scope
from latency_models.backends import Backend, PreparedGraph
from latency_models.protocol import ProtocolConfig, Reference, machine_fingerprint, measure, release_freed_memory
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig, Workload

if TYPE_CHECKING:
    from latency_models.export_pool import ExportPool

#: The reference program of each kind, by name; change a name whenever its program changes, so that old
#: baselines are not reused. "decode" is the ladder's smallest rung.
PROGRAMS = {
    "prefill": "mobilellm-prefill-d128-l2-t32",
    "decode": "mobilellm-decode-d128-l2-v2048-kv128",
    "decode-11m": "mobilellm-decode-d288-l8-f1152-v4096-kv256",
    "decode-25m": "mobilellm-decode-d384-l11-f1536-v4096-kv256",
}
DECODE_LADDER = ("decode", "decode-11m", "decode-25m")  # smallest first
#: A decode step takes the largest rung with at most this many times its parameters (see the module docstring).
RUNG_REACH = 1.6
#: A baseline is the lower quartile of separate measurements of the reference, one every ``BASELINE_EVERY_S`` of
#: its span (at least ``MIN_BASELINE_ROUNDS``: rounds back to back sample one moment, so more add little).
BASELINE_EVERY_S, MIN_BASELINE_ROUNDS = 2.0, 5


def reference_candidate(kind: str) -> tuple[ArchConfig, Workload]:
    """The architecture and shape of the reference program of ``kind``."""
    if kind not in PROGRAMS:
        raise ValueError(f"no drift reference of kind {kind!r}; there are {sorted(PROGRAMS)}")
    if kind == "prefill":
        arch = ArchConfig(vocab_size=512, dim=128, layers=[LayerConfig(ffn_dim=256)] * 2, max_context=64)
        return arch, Workload(prefill_len=32, decode_kv_len=1)
    if kind == "decode":  # about the weights and KV cache of a typical small decode candidate
        arch = ArchConfig(vocab_size=2048, dim=128, layers=[LayerConfig(ffn_dim=512)] * 2, max_context=160)
        return arch, Workload(prefill_len=1, decode_kv_len=128)
    dim, n_layers, ffn_dim, vocab_size = _RUNGS[kind]
    layer = LayerConfig(n_heads=dim // 32, n_kv_heads=1, ffn_dim=ffn_dim)
    arch = ArchConfig(vocab_size=vocab_size, dim=dim, layers=[layer] * n_layers, max_context=320)
    return arch, Workload(prefill_len=1, decode_kv_len=256)


#: The larger decode rungs: (dim, layers, FFN width, vocabulary), heads of 32 features and one KV head.
_RUNGS = {"decode-11m": (288, 8, 1152, 4096), "decode-25m": (384, 11, 1536, 4096)}


def reference_kind(phase: str, arch: ArchConfig) -> str:
    """The reference a ``phase`` of ``arch`` is timed beside: prefill's, or the largest decode rung with at most
    ``RUNG_REACH`` times its parameters (the smallest rung when none is that small)."""
    if phase != "decode":
        return phase
    reach = RUNG_REACH * arch.n_params()
    return next((rung for rung in reversed(DECODE_LADDER) if rung_params(rung) <= reach), DECODE_LADDER[0])


def reference_phase(kind: str) -> str:
    """The phase a reference of ``kind`` runs: prefill's, or a decode step for every rung of the ladder."""
    return "prefill" if kind == "prefill" else "decode"


@cache
def rung_params(kind: str) -> int:
    """Parameters of the reference program of ``kind``."""
    return reference_candidate(kind)[0].n_params()


#: (backend, threads, kind) -> the reference program loaded in this process (exporting takes seconds).
_programs: dict[tuple[str, int, str], PreparedGraph] = {}


def export_reference(exporter: ExportPool, kind: str) -> None:
    """Queue the export of the reference of ``kind`` in ``exporter``'s workers (ahead of its first use, which
    then only waits for it)."""
    from latency_models.export_pool import flash_job

    arch, workload = reference_candidate(kind)
    exporter.submit(("reference", kind), [flash_job(arch, workload, _new_workdir(), reference_phase(kind), name=kind)])


def _new_workdir() -> Path:
    """A folder no program was written to yet, made only when one is (a loaded program maps its file, so a
    file is never written over); a submit that turns out to be queued already leaves nothing behind."""
    return Path(tempfile.gettempdir()) / f"hilnas-drift-reference-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _program(backend: Backend, threads: int, kind: str, exporter: ExportPool | None) -> PreparedGraph:
    """The reference of ``kind``, exported here or by ``exporter``'s workers, and run from a load made after
    the export's freed memory is released (why: ``protocol``), as candidates are timed."""
    key = (backend.name, threads, kind)
    if key not in _programs:
        from latency_models.measure import export_checked, load_exported, phase_program

        arch, workload = reference_candidate(kind)
        graph, inputs = phase_program(arch, workload, reference_phase(kind))
        backend.set_threads(threads)  # before anything is loaded: resizing under a loaded program can deadlock
        if exporter is None:
            prepared = export_checked(graph, inputs, kind, backend, _new_workdir()).prepared
        else:
            export_reference(exporter, kind)  # a no-op when it was queued ahead
            exported = exporter.take(("reference", kind), (kind,))[kind]
            prepared = load_exported(exported, inputs, kind, backend).prepared
        release_freed_memory()
        _programs[key] = prepared if prepared.reload is None else replace(prepared, run=prepared.reload())
    return _programs[key]


def measure_baseline(program: PreparedGraph, protocol: ProtocolConfig, span_s: float | None = None) -> float:
    """The reference's time on the device when quiet: the lower quartile of tight measurements spread evenly over
    ``span_s`` seconds (default: the ``baseline_span_s`` setting), one every ``BASELINE_EVERY_S``.

    Every drift-corrected row of a device is scaled by this number, so a slow moment must not become it. On a
    shared host the whole CPU slows by 20-50% for seconds at a time: timed in 1-s windows for 75 s, the decode
    reference took 0.093 ms in quiet seconds and 0.12-0.15 ms in slow ones. Five rounds back to back once stored
    a decode baseline of 0.153 ms in such a patch, against 0.095-0.108 ms during the rest of that calibration, and
    every later row of that store came out about 45% slower than it ran. Over those 75 s, the median of three
    consecutive seconds ranged over 1.56x; the lower quartile of ten seconds spread over 20 s, over 1.12x.
    A round whose interval stays wide is still one sample of that time, so it is not re-measured (that tripled
    the cost on a busy host)."""
    from hilnas.settings import get_settings

    span_s = get_settings().baseline_span_s if span_s is None else span_s
    tight = protocol.model_copy(update={"ci_half_width": min(protocol.ci_half_width, 0.01), "attempts": 1})
    count = max(MIN_BASELINE_ROUNDS, round(span_s / BASELINE_EVERY_S) + 1)
    rounds, started = [], time.perf_counter()
    for index in range(count):
        time.sleep(max(0.0, started + index * span_s / (count - 1) - time.perf_counter()))
        rounds.append(measure(program.run, tight).median_ms)
    return float(np.quantile(rounds, 0.25))


def _stored_baseline(
    db_url: str,
    device: str,
    backend: Backend,
    protocol: ProtocolConfig,
    program: PreparedGraph,
    name: str,
    span_s: float | None,
) -> float:
    """The first baseline of program ``name`` stored for this device, measured and stored now when there is none."""
    key = {"device": device, "backend": backend.name, "threads": protocol.threads, "program": name}
    query = select(ReferenceBaseline.median_ms).filter_by(**key).order_by(ReferenceBaseline.id).limit(1)
    with session_scope(db_url) as session:
        found = session.scalar(query)
    if found is not None:
        return float(found)
    baseline = measure_baseline(program, protocol, span_s)
    with session_scope(db_url) as session:
        fingerprint = machine_fingerprint(backend.versions(), protocol)
        session.add(ReferenceBaseline(**key, median_ms=baseline, fingerprint=fingerprint))
    with session_scope(db_url) as session:  # another process may have stored one first: the first wins
        return float(session.scalar(query))


#: (store or None, device, backend, threads, program) -> baseline. The first stored baseline never changes, so
#: one look-up per process is enough; without a store the baseline is this process's own.
_baselines: dict[tuple[str | None, str, str, int, str], float] = {}


def drift_reference(
    backend: Backend,
    device: str,
    protocol: ProtocolConfig,
    db_url: str | None = None,
    kind: str = "prefill",
    exporter: ExportPool | None = None,
    baseline_span_s: float | None = None,
    exponent: float = 1.0,
) -> Reference | None:
    """The reference program of ``kind`` ("prefill": compute-bound, "decode": memory-bound) ready to time in
    blocks beside a candidate's on ``device``, with its agreed baseline (None when the protocol measures
    without one). With ``exporter``, its workers export the program (once per process) and this process only
    loads it. ``baseline_span_s``: see ``measure_baseline`` (used only when no baseline is known yet).
    ``exponent``: how much of the reference's slowdown is taken out (``drift_exponent.device_exponent``)."""
    if not protocol.drift_reference:
        return None
    program = _program(backend, protocol.threads, kind, exporter)
    key = (db_url, device, backend.name, protocol.threads, PROGRAMS[kind])
    if key not in _baselines:
        _baselines[key] = (
            _stored_baseline(db_url, device, backend, protocol, program, PROGRAMS[kind], baseline_span_s)
            if db_url is not None
            else measure_baseline(program, protocol, baseline_span_s)
        )
    return Reference(
        run=program.run, baseline_ms=_baselines[key], program=PROGRAMS[kind], exponent=exponent, reload=program.reload
    )
