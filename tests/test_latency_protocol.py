"""Measurement protocol (stability, re-measuring, fingerprint) and the measurement cache."""

from __future__ import annotations

import itertools
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from latency_models import cache
from latency_models.backends import PreparedGraph
from latency_models.protocol import (
    FRESH_REFERENCE_LOADS,
    KEPT_REFERENCE_LABEL,
    ProtocolConfig,
    Reference,
    machine_fingerprint,
    measure,
    measure_prepared,
    release_freed_memory,
    timing_label,
)
from search.families.mobilellm_flash.family import MobileLLMFlashFamily
from search.family import TrialContext
from tests.timing_support import busy_wait_ms


def test_noisy_call_is_flagged_unstable_after_every_attempt() -> None:
    durations = itertools.cycle([0.05, 2.0, 0.3, 1.2, 0.05, 3.0])
    config = ProtocolConfig(warmup=0, min_repeats=5, max_repeats=30, ci_half_width=0.01, time_cap_s=0.2, attempts=2)
    timing = measure(lambda: busy_wait_ms(next(durations)), config)
    assert not timing.stable
    assert timing.attempts == 2 and len(timing.history) == 2
    assert timing.ci_half_width > 0.01


@pytest.mark.timing
def test_steady_call_is_stable_on_the_first_attempt() -> None:
    config = ProtocolConfig(warmup=1, min_repeats=10, ci_half_width=0.5, time_cap_s=2.0, attempts=3)
    timing = measure(lambda: busy_wait_ms(1.0), config)
    assert timing.stable and timing.attempts == 1
    assert timing.p10_ms <= timing.median_ms <= timing.p90_ms and timing.median_ms >= 1.0


@pytest.mark.timing
def test_a_narrow_interval_ends_a_load_only_after_the_minimum_time() -> None:
    # A steady 1 ms call pins its median down within one block; min_time_s still keeps it timed for 0.2 s,
    # so that one short moment of a drifting CPU cannot decide the result. time_cap_s stays the upper bound.
    quick = ProtocolConfig(warmup=0, min_repeats=5, ci_half_width=0.5, time_cap_s=2.0, min_time_s=0.0, attempts=1)
    patient = quick.model_copy(update={"min_time_s": 0.2})
    capped = quick.model_copy(update={"min_time_s": 1.0, "time_cap_s": 0.05})
    assert len(measure(lambda: busy_wait_ms(1.0), quick).samples_ms) <= 10
    assert len(measure(lambda: busy_wait_ms(1.0), patient).samples_ms) >= 150
    assert len(measure(lambda: busy_wait_ms(1.0), capped).samples_ms) <= 60


@pytest.mark.timing
def test_each_load_of_a_program_is_timed_and_the_median_load_reported() -> None:
    # Three loads of one program that run at different speeds, as memory placement makes them.
    loads = iter([2.0, 3.0])
    config = ProtocolConfig(warmup=0, min_repeats=5, ci_half_width=0.5, time_cap_s=0.5, attempts=1, loads=3)

    def reload() -> Callable[[], None]:
        ms = next(loads)
        return lambda: busy_wait_ms(ms)

    timing = measure(lambda: busy_wait_ms(1.0), config, reload=reload)
    assert [round(m) for m in timing.load_medians_ms] == [1, 2, 3]
    assert round(timing.median_ms) == 2 and timing.stable
    assert [entry["load"] for entry in timing.history] == [0, 1, 2]
    alone = measure(lambda: busy_wait_ms(1.0), config)  # nothing to reload: one load
    assert alone.load_medians_ms == [] and round(alone.median_ms) == 1


@pytest.mark.timing
def test_an_exported_graph_is_timed_on_fresh_loads_only() -> None:
    # The load made during export sits in the heap the export fragmented: it must never be timed.
    speeds = iter([2.0, 3.0, 4.0])
    config = ProtocolConfig(warmup=0, min_repeats=5, ci_half_width=0.5, time_cap_s=0.5, attempts=1, loads=3)

    def reload() -> Callable[[], None]:
        ms = next(speeds)
        return lambda: busy_wait_ms(ms)

    prepared = PreparedGraph(run=lambda: busy_wait_ms(1.0), export_s=0.0, reload=reload)
    timing = measure_prepared(prepared, config)
    assert [round(m) for m in timing.load_medians_ms] == [2, 3, 4]
    eager = measure_prepared(PreparedGraph(run=lambda: busy_wait_ms(1.0), export_s=0.0), config)
    assert round(eager.median_ms) == 1  # a backend that cannot reload times the load it has


def _resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_releasing_freed_memory_hands_a_fragmented_heap_back() -> None:
    # 200 MB in heap-sized blocks, all freed but the last, which pins the heap's top as an export's leftovers do:
    # glibc keeps the freed pages resident until malloc_trim returns them.
    blocks = [b"\x01" * 100_000 for _ in range(2000)]  # written, so resident (a calloc'ed block may not be)
    last = blocks.pop()
    blocks.clear()
    before = _resident_mb()
    release_freed_memory()
    assert before - _resident_mb() > 100
    assert len(last) == 100_000


def test_fingerprint_names_machine_and_libraries() -> None:
    fingerprint = machine_fingerprint({"torch": "2.x"}, ProtocolConfig(threads=2))
    assert fingerprint["threads"] == 2 and fingerprint["torch_version"] == "2.x"
    assert {"cpu", "logical_cores", "governor", "kernel", "protocol"} <= set(fingerprint)


CANDIDATE = {
    "n_layers": 1,
    "dim": 32,
    "n_heads": 4,
    "n_kv_heads": 2,
    "ffn_dim": [64],
    "attention": ["full"],
    "window": 16,
    "share_embeddings": True,
    "block_repeat": 1,
    "prefill_len": 8,
    "decode_kv_len": 8,
}


def test_cache_hit_avoids_re_measuring(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hilnas.settings import get_settings

    monkeypatch.setenv("HILNAS_DB_URL", db_url)
    get_settings.cache_clear()
    family = MobileLLMFlashFamily(
        MobileLLMFlashFamily.Options(
            vocab_size=64,
            backend="torch-eager",
            protocol=ProtocolConfig(ci_half_width=0.5, time_cap_s=0.3, min_time_s=0.0, loads=2),
        )
    )
    context = TrialContext(1, 0, 1, 0, tmp_path)
    first = family.measure(CANDIDATE, "cpu", context)
    assert first.info["cached_phases"] == [] and set(first.metrics) == {"prefill_ms", "decode_ms"}
    assert cache.save(db_url, first.measurements) == 2  # the standalone writer stores them
    second = family.measure(CANDIDATE, "cpu", context)
    assert second.info["cached_phases"] == ["prefill", "decode"]
    assert second.metrics == first.metrics
    assert [r["samples_ms"] for r in second.measurements] == [r["samples_ms"] for r in first.measurements]
    assert cache.save(db_url, second.measurements) == 0  # nothing is stored twice


def _row(**changes: object) -> dict:
    """A measurement row of one decode shape (unstable, not drift-corrected unless ``changes`` say so)."""
    return {
        "arch_hash": "abc",
        "architecture": {},
        "device": "cpu",
        "backend": "torch-eager",
        "phase": "decode",
        "shape": {"decode_kv_len": 8},
        "stage": None,
        "median_ms": 1.0,
        "p10_ms": 0.5,
        "p90_ms": 3.0,
        "cv": 0.9,
        "n_samples": 3,
        "samples_ms": [0.5, 1.0, 3.0],
        "stable": False,
        "fingerprint": {},
        "extra": None,
    } | changes


def test_unstable_rows_are_no_cache_hits_and_get_replaced(sqlite_url: str) -> None:
    row = _row()
    assert cache.save(sqlite_url, [row]) == 1
    assert cache.lookup(sqlite_url, "abc", "cpu", "torch-eager", "decode", {"decode_kv_len": 8}) is None
    assert cache.save(sqlite_url, [row | {"stable": True, "median_ms": 2.0}]) == 1
    hit = cache.lookup(sqlite_url, "abc", "cpu", "torch-eager", "decode", {"decode_kv_len": 8})
    assert hit is not None and hit["median_ms"] == 2.0
    assert len(cache.load(sqlite_url, "cpu", "torch-eager", stable_only=False)) == 1


def test_rows_timed_another_way_are_no_cache_hits_and_never_train_the_same_predictor(sqlite_url: str) -> None:
    key = ("abc", "cpu", "torch-eager", "decode", {"decode_kv_len": 8})
    corrected = timing_label(ProtocolConfig())
    raw_config = ProtocolConfig(drift_reference=False)
    # A row stored before rows were labelled: wall-clock time, as every row then was.
    assert cache.save(sqlite_url, [_row(stable=True, extra={"export_s": 1.0})]) == 1
    assert cache.lookup(sqlite_url, *key, timing_label(raw_config))["median_ms"] == 1.0
    assert cache.lookup(sqlite_url, *key, corrected) is None
    assert cache.load(sqlite_url, "cpu", "torch-eager", timing=corrected) == []
    # The drift-corrected measurement replaces it, and is then a hit for drift-corrected callers alone.
    assert cache.save(sqlite_url, [_row(stable=True, median_ms=0.8, extra={"timing": corrected, "drift": 1.2})]) == 1
    assert cache.lookup(sqlite_url, *key, corrected)["median_ms"] == 0.8
    assert cache.lookup(sqlite_url, *key, timing_label(raw_config)) is None
    assert [r["median_ms"] for r in cache.load(sqlite_url, "cpu", "torch-eager", timing=corrected)] == [0.8]
    assert cache.save(sqlite_url, [_row(stable=True, median_ms=0.9, extra={"timing": corrected})]) == 0


def test_rows_timed_beside_the_reference_loaded_once_are_another_kind_than_fresh_loads_rows(sqlite_url: str) -> None:
    # Before fresh reference loads every drift-corrected row said "drift-corrected"; timed beside fresh loads the
    # same candidate comes out 5-9% higher, so a store holding old rows must measure again, not mix the two.
    key = ("abc", "cpu", "torch-eager", "decode", {"decode_kv_len": 8})
    current = timing_label(ProtocolConfig())
    assert current != KEPT_REFERENCE_LABEL
    old = _row(stable=True, median_ms=0.8, extra={"timing": KEPT_REFERENCE_LABEL, "drift": 1.2})
    unlabelled_old = _row(stable=True, median_ms=0.8, extra={"drift": 1.2})  # stored before rows were labelled
    assert cache.save(sqlite_url, [old]) == 1
    assert cache.save(sqlite_url, [unlabelled_old]) == 0  # the same, first generation: already held
    assert cache.lookup(sqlite_url, *key, current) is None
    assert cache.load(sqlite_url, "cpu", "torch-eager", timing=current) == []
    assert cache.save(sqlite_url, [_row(stable=True, median_ms=0.85, extra={"timing": current, "drift": 1.2})]) == 1
    assert cache.lookup(sqlite_url, *key, current)["median_ms"] == 0.85
    assert len(cache.load(sqlite_url, "cpu", "torch-eager", stable_only=False)) == 1  # the old row was replaced


def test_unstable_measurement_fails_the_trial_instead_of_being_used(tmp_path: Path) -> None:
    from search.families.mobilellm_flash.family import UnstableMeasurement

    impossible = ProtocolConfig(ci_half_width=1e-9, time_cap_s=0.05, min_repeats=5, attempts=2)
    family = MobileLLMFlashFamily(
        MobileLLMFlashFamily.Options(vocab_size=64, backend="torch-eager", protocol=impossible, use_cache=False)
    )
    with pytest.raises(UnstableMeasurement, match="unstable after 2 attempts"):
        family.measure(CANDIDATE, "cpu", TrialContext(1, 0, 1, 0, tmp_path))


class _Machine:
    """A device that runs at 1/1.8 of its speed for 800 ms of every second (a noisy neighbour)."""

    def work(self, ms: float) -> None:
        slow = (time.perf_counter() % 1.0) < 0.8
        busy_wait_ms(ms * (1.8 if slow else 1.0))


@pytest.mark.timing
def test_drift_reference_cancels_a_slowdown_that_hits_both_programs() -> None:
    machine = _Machine()
    # 600 samples span at least one period, so most of them fall in the slow part (~70%).
    config = ProtocolConfig(warmup=0, min_repeats=600, max_repeats=600, ci_half_width=0.5, time_cap_s=10.0)
    raw = measure(lambda: machine.work(1.0), config)
    # A block of the target and the reference block before it mostly see the same speed: the ratio is 1.0 / 2.0.
    reference = Reference(run=lambda: machine.work(2.0), baseline_ms=2.0)
    corrected = measure(lambda: machine.work(1.0), config, reference)
    assert raw.median_ms > 1.3  # the raw median describes the slow machine
    assert corrected.median_ms == pytest.approx(1.0, rel=0.1)
    assert corrected.raw_median_ms > 1.3 and corrected.reference_median_ms > 2.6


@pytest.mark.timing
def test_every_load_is_timed_beside_fresh_loads_of_the_reference_taken_in_turn() -> None:
    # A reference kept loaded since the start drifts (here: 2x faster than its baseline), fresh loads do not.
    loads: list[str] = []
    blocks_timed: list[int] = []

    def reload_reference() -> Callable[[], None]:
        loads.append("reference")
        number = loads.count("reference")

        def run() -> None:
            blocks_timed.append(number)
            busy_wait_ms(1.0)

        return run

    def reload_candidate() -> Callable[[], None]:
        loads.append("candidate")
        return lambda: busy_wait_ms(1.0)

    config = ProtocolConfig(
        warmup=0, min_repeats=15, max_repeats=15, ci_half_width=0.9, min_time_s=0.0, loads=2, attempts=1
    )
    reference = Reference(run=lambda: busy_wait_ms(0.5), baseline_ms=1.0, reload=reload_reference)
    timing = measure(reload_candidate(), config, reference, reload_candidate)
    fresh = ["reference"] * FRESH_REFERENCE_LOADS
    assert loads == ["candidate", *fresh, "candidate", *fresh]
    assert set(blocks_timed) == set(range(1, 2 * FRESH_REFERENCE_LOADS + 1))  # each fresh load timed blocks
    assert timing.reference_median_ms == pytest.approx(1.0, rel=0.3)  # the long-loaded one would give 0.5
    assert timing.median_ms == pytest.approx(1.0, rel=0.3)


def test_with_changes_keeps_what_is_none_and_checks_what_changes() -> None:
    from pydantic import ValidationError

    base = ProtocolConfig(loads=4)
    changed = base.with_changes(loads=None, min_time_s=0.0, ci_half_width=0.5)
    assert (changed.loads, changed.min_time_s, changed.ci_half_width) == (4, 0.0, 0.5)
    with pytest.raises(ValidationError, match="loads"):
        base.with_changes(loads=0)  # model_copy would have taken it


class _SharedCache:
    """Two programs that evict each other from the caches: after a switch, a program's first four runs take 3x."""

    def __init__(self) -> None:
        self.last, self.streak = "", 0

    def run(self, program: str, ms: float) -> None:
        self.streak = self.streak + 1 if program == self.last else 1
        self.last = program
        busy_wait_ms(ms * (3.0 if self.streak <= 4 else 1.0))


@pytest.mark.timing
def test_blocks_are_timed_warm_after_the_other_program_evicted_them() -> None:
    machine = _SharedCache()
    config = ProtocolConfig(warmup=0, min_repeats=20, max_repeats=20, ci_half_width=0.5, min_time_s=0.0, attempts=1)
    reference = Reference(run=lambda: machine.run("reference", 2.0), baseline_ms=2.0)
    timing = measure(lambda: machine.run("candidate", 1.0), config, reference)
    # Timed cold, most of each block would take 3x, the reference's too: its median would describe the switching.
    assert timing.reference_median_ms == pytest.approx(2.0, rel=0.2)
    assert timing.raw_median_ms == pytest.approx(1.0, rel=0.2)
    assert timing.median_ms == pytest.approx(1.0, rel=0.2)


def test_reference_baseline_is_stored_once_and_the_first_one_wins(db_url: str) -> None:
    from sqlalchemy import select

    from db.models import ReferenceBaseline
    from db.session import session_scope
    from latency_models.backends import get_backend
    from latency_models.reference import PROGRAMS, drift_reference

    backend = get_backend("torch-eager")
    config = ProtocolConfig(ci_half_width=0.5, time_cap_s=0.1)
    first = drift_reference(backend, "cpu-a", config, db_url)
    assert first.baseline_ms > 0 and drift_reference(backend, "cpu-a", config, db_url).baseline_ms == first.baseline_ms
    with session_scope(db_url) as session:
        session.add(
            ReferenceBaseline(
                device="cpu-b",
                backend="torch-eager",
                threads=1,
                program=PROGRAMS["prefill"],
                median_ms=123.0,
                fingerprint={},
            )
        )
    assert drift_reference(backend, "cpu-b", config, db_url).baseline_ms == 123.0  # measured elsewhere first
    with session_scope(db_url) as session:
        devices = sorted(session.scalars(select(ReferenceBaseline.device)))
    assert devices == ["cpu-a", "cpu-b"]
    # A decode step is timed beside the decode reference, which keeps a baseline of its own.
    decode = drift_reference(backend, "cpu-a", config, db_url, kind="decode")
    assert decode.baseline_ms > 0 and decode.baseline_ms != first.baseline_ms
    assert (first.program, decode.program) == (PROGRAMS["prefill"], PROGRAMS["decode"])  # rows name what timed them
    with session_scope(db_url) as session:
        programs = sorted(session.scalars(select(ReferenceBaseline.program).filter_by(device="cpu-a")))
    assert programs == sorted([PROGRAMS["prefill"], PROGRAMS["decode"]])  # the larger decode rungs were not used
    with pytest.raises(ValueError, match="no drift reference of kind 'encode'"):
        drift_reference(backend, "cpu-a", config, db_url, kind="encode")


def test_a_decode_step_is_timed_beside_the_largest_rung_within_reach() -> None:
    from latency_models.reference import DECODE_LADDER, RUNG_REACH, reference_candidate, reference_kind, rung_params
    from search.families.mobilellm_flash.space import ArchConfig, LayerConfig

    def graph(dim: int, n_layers: int, ffn_dim: int, vocab_size: int = 4096) -> ArchConfig:
        layer = LayerConfig(n_heads=dim // 32, n_kv_heads=1, ffn_dim=ffn_dim)
        return ArchConfig(vocab_size=vocab_size, dim=dim, layers=[layer] * n_layers, max_context=320)

    for rung in DECODE_LADDER:  # a rung's own graph is timed beside it
        assert reference_kind("decode", reference_candidate(rung)[0]) == rung
    tiny = graph(64, 1, 128, 512)
    assert tiny.n_params() * RUNG_REACH < rung_params("decode")  # below every rung: the smallest
    assert reference_kind("decode", tiny) == "decode"
    assert reference_kind("decode", graph(224, 6, 768, 2048)) == "decode"  # 4.2M: the 10.6M rung is out of reach
    assert reference_kind("decode", graph(256, 8, 896)) == "decode-11m"  # 7.7M
    assert reference_kind("decode", graph(320, 10, 1280)) == "decode-25m"  # 15.9M
    assert reference_kind("decode", graph(1024, 24, 4096, 32000)) == "decode-25m"  # far above: the largest
    assert reference_kind("prefill", graph(1024, 24, 4096, 32000)) == "prefill"


def test_every_larger_decode_rung_is_a_decode_step_that_loads_and_runs() -> None:
    """Asking for a larger rung once failed ("unknown phase 'decode-11m'"), so no step above 6.6M parameters could be
    drift-corrected: a rung's kind is its name, its graph a decode step."""
    from latency_models.backends import get_backend
    from latency_models.reference import DECODE_LADDER, PROGRAMS, drift_reference, reference_candidate

    backend = get_backend("torch-eager")
    config = ProtocolConfig(ci_half_width=0.5, time_cap_s=0.1)
    for rung in DECODE_LADDER[1:]:
        reference = drift_reference(backend, "cpu-rungs", config, kind=rung, baseline_span_s=0)
        assert reference.program == PROGRAMS[rung] and reference.baseline_ms > 0
        logits = reference.run()[0]
        assert logits.shape[-1] == reference_candidate(rung)[0].vocab_size


@pytest.mark.timing
def test_a_baseline_is_watched_over_its_span_so_a_slow_patch_does_not_become_it() -> None:
    from latency_models.backends import PreparedGraph
    from latency_models.reference import measure_baseline

    started = time.perf_counter()

    def reference() -> None:  # a device slowed to 1/1.8 for its first 0.3 s
        busy_wait_ms(1.8 if time.perf_counter() - started < 0.3 else 1.0)

    program = PreparedGraph(run=reference, export_s=0.0)
    config = ProtocolConfig(warmup=0, min_repeats=5, max_repeats=5, ci_half_width=0.5, min_time_s=0.0)
    at_once = measure_baseline(program, config, span_s=0.0)  # all rounds inside the slow patch
    assert at_once == pytest.approx(1.8, rel=0.1)
    started = time.perf_counter()
    watched = measure_baseline(program, config, span_s=1.0)  # 2 of 5 rounds inside it: the lower quartile is not
    assert watched == pytest.approx(1.0, rel=0.1) and time.perf_counter() - started >= 1.0
