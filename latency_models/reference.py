"""The drift reference: a fixed small MobileLLM prefill graph timed in blocks between the candidate's (see
``protocol``).

Its *baseline* is its typical time on the device. Drift-corrected latencies are ratios to the
reference times the baseline, so every process that measures a device must agree on it: with a store,
the first baseline stored for (device, backend, threads, program) is used by everyone after; without
one (a benchmark in one process) it is measured once per process.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.models import ReferenceBaseline
from db.session import session_scope
from latency_models.backends import Backend, PreparedGraph, get_backend
from latency_models.protocol import ProtocolConfig, Reference, machine_fingerprint, measure

#: Names the program below; change it whenever the program changes, so old baselines are not reused.
PROGRAM = "mobilellm-prefill-d128-l2-t32"
BASELINE_ROUNDS = 5  # the baseline is the median of this many separate measurements, spread over seconds


def _reference_graph(backend: Backend, workdir: Path) -> PreparedGraph:
    from latency_models.measure import build_model
    from search.families.mobilellm_flash.model import example_inputs, phase_graph
    from search.families.mobilellm_flash.space import ArchConfig, LayerConfig, Workload

    arch = ArchConfig(vocab_size=512, dim=128, layers=[LayerConfig(ffn_dim=256)] * 2, max_context=64)
    model = build_model(arch)
    workload = Workload(prefill_len=32, decode_kv_len=1)
    inputs = example_inputs(model, workload, "prefill")
    return backend.prepare(phase_graph(model, "prefill").eval(), inputs, "prefill", workdir)


@lru_cache(maxsize=4)
def _program(backend_name: str, threads: int) -> PreparedGraph:
    """One prepared reference per backend and thread count in this process (exporting takes seconds)."""
    backend = get_backend(backend_name)
    backend.set_threads(threads)
    return _reference_graph(backend, Path(tempfile.mkdtemp(prefix="hilnas-drift-reference-")))


def measure_baseline(program: PreparedGraph, protocol: ProtocolConfig) -> float:
    """The reference's typical time: the median of several separate tight measurements."""
    tight = protocol.model_copy(update={"ci_half_width": min(protocol.ci_half_width, 0.01)})
    return float(np.median([measure(program.run, tight).median_ms for _ in range(BASELINE_ROUNDS)]))


def _stored_baseline(
    db_url: str, device: str, backend: Backend, protocol: ProtocolConfig, program: PreparedGraph
) -> float:
    """The first baseline stored for this device, measured and stored now when there is none."""
    key = {"device": device, "backend": backend.name, "threads": protocol.threads, "program": PROGRAM}
    query = select(ReferenceBaseline.median_ms).filter_by(**key).order_by(ReferenceBaseline.id).limit(1)
    with session_scope(db_url) as session:
        found = session.scalar(query)
    if found is not None:
        return float(found)
    baseline = measure_baseline(program, protocol)
    with session_scope(db_url) as session:
        fingerprint = machine_fingerprint(backend.versions(), protocol)
        session.add(ReferenceBaseline(**key, median_ms=baseline, fingerprint=fingerprint))
    with session_scope(db_url) as session:  # another process may have stored one first: the first wins
        return float(session.scalar(query))


#: (store or None, device, backend, threads) -> baseline. The first stored baseline never changes, so one
#: look-up per process is enough; without a store the baseline is this process's own.
_baselines: dict[tuple[str | None, str, str, int], float] = {}


def drift_reference(
    backend: Backend, device: str, protocol: ProtocolConfig, db_url: str | None = None
) -> Reference | None:
    """The reference program ready to time in blocks beside a candidate's on ``device``, with its agreed
    baseline (None when the protocol measures without one)."""
    if not protocol.drift_reference:
        return None
    program = _program(backend.name, protocol.threads)
    key = (db_url, device, backend.name, protocol.threads)
    if key not in _baselines:
        _baselines[key] = (
            _stored_baseline(db_url, device, backend, protocol, program)
            if db_url is not None
            else measure_baseline(program, protocol)
        )
    return Reference(run=program.run, baseline_ms=_baselines[key])
