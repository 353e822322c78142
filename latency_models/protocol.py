"""The measurement protocol: fixed threads, warm-up, repeat until the median is pinned down.

A measurement repeats the call until the 95% confidence interval of the median (an exact,
distribution-free order-statistic interval from ``scipy.stats.quantile_test``) is narrower than
``ci_half_width`` of the median, or until ``time_cap_s``. A measurement whose interval never got
narrow enough is *unstable*: it is repeated up to ``attempts`` times and, if still unstable,
returned flagged so that callers refuse to use it.

On a shared or virtualised machine the speed of the whole CPU wanders by 10-30% within seconds (other
tenants, frequency changes), far more than the interval of one median. With a ``Reference`` the
protocol alternates short blocks of the candidate with short blocks of a fixed reference program (one per kind
of work, see ``reference``) and
keeps the ratio of each sample to its neighbouring reference block: a slowdown that hits both cancels.
The latency reported is the median ratio times the reference's *baseline* (its typical time on this
device, measured once and kept), so it stays in milliseconds, and the interval is that of the ratio. A candidate
need not slow as much as its reference, so the ratio is raised to a fitted exponent (``drift_exponent``).

Where a program lands in memory moves its time too: eight ExecuTorch decode graphs, each loaded five times in
one process, moved by 7% on average from one load to the next, against 3% between two timings of one load. So a
program is loaded ``loads`` times, each load timed as above, and the latency is the median of the loads'
medians (what a phone that loads the model anew each time it starts can expect), each load timed beside fresh
loads of the reference (see ``Reference``). Exporting a candidate takes
about 30 s on the development machine, so five loads of at least ``min_time_s`` each add little (about 4 s).

An export leaves the process heap full of freed, fragmented memory, and programs loaded into it run at a different
speed. Decode graphs timed right after their export differed from the same graphs timed in later timing-only sweeps
by +6%, -8% and -12% in three processes (spread 4.7-8.3%), while the sweeps agreed with each other to 1.8-5.3%.
After ``gc.collect()`` and glibc's ``malloc_trim`` they agreed with the sweeps to 3.3-3.6%, all within 10%; a
one-second pause instead changed nothing. So ``measure_prepared`` releases that memory and then times fresh loads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

if TYPE_CHECKING:
    from latency_models.backends.base import PreparedGraph


class ProtocolConfig(BaseModel):
    """How one (graph, shape) is timed; stored with every measurement in its fingerprint."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    threads: int = Field(1, ge=1, description="runtime threads, fixed for every measurement")
    warmup: int = Field(3, ge=0)
    min_repeats: int = Field(15, ge=5)
    max_repeats: int = Field(400, ge=5)
    ci_half_width: float = Field(0.03, gt=0, description="target half-width of the median's 95% CI, relative")
    time_cap_s: float = Field(3.0, gt=0, description="timed seconds per attempt before giving up")
    min_time_s: float = Field(
        0.3,
        ge=0,
        description="timed seconds per attempt before a narrow interval may end it (a short window sees one moment "
        "of a drifting CPU; capped by time_cap_s)",
    )
    attempts: int = Field(3, ge=1, description="re-measurements of an unstable result")
    loads: int = Field(
        5,
        ge=1,
        description="times the program is loaded afresh and timed; the latency is the median of the loads' medians",
    )
    drift_reference: bool = Field(
        True,
        description="alternate blocks of the candidate with blocks of a fixed reference program and report the "
        "drift-corrected ratio",
    )

    def with_changes(self, **changes: Any) -> ProtocolConfig:
        """This protocol with the given fields changed, the ones given as None left alone, and checked again
        (``model_copy`` would take an invalid value, such as zero loads, without a word)."""
        given = {name: value for name, value in changes.items() if value is not None}
        return ProtocolConfig.model_validate(self.model_dump() | given)


#: A family option: how many processes export candidates (``export_pool``), so that the process that times them
#: never exports and its heap stays as a fresh process's.
ExportWorkers = Annotated[
    int | None,
    Field(
        None,
        ge=0,
        description="processes that export candidates while none is timed, so that the timing process never "
        "exports; None: one per usable core, 0: export in the timing process",
    ),
]


BLOCK = 5  # samples timed back to back between two checks (and, with a reference, between its blocks)
# Untimed runs before each block when two programs alternate. Each evicts the other from the caches: after a block
# of a 7M-parameter decode step, the decode reference's first run took 2.6x its time alone and settled only after
# about six runs, the candidate after three to five. Timed at once, the reference's median grew with the size of
# the candidate beside it, and the drift correction turned that into noise.
BLOCK_WARMUP = 6
FRESH_REFERENCE_LOADS = 3  # fresh loads of the reference beside each load of a candidate (see ``Reference``)


@dataclass(frozen=True)
class Reference:
    """A fixed program timed in blocks between the candidate's, its baseline time on this device (ms), and how
    much of its slowdown a sample is corrected by: ``(baseline / reference block) ** exponent`` (see
    ``drift_exponent``; 1 divides by the reference).

    With ``reload`` (a fresh load of the program, returning its ``run``), every load of a candidate is timed
    beside ``FRESH_REFERENCE_LOADS`` fresh loads of the reference, made just after the candidate's and taken in
    turn block by block. Why fresh: a program kept loaded for the whole run does not stay the program a fresh
    load is. In a diagnostic run the decode reference loaded once at the start got 4.6% faster over 20 minutes of
    exports while fresh loads of it, timed beside it, stayed within 1% of its baseline; candidates are fresh
    loads, so dividing them by the long-loaded reference turned its drift into theirs (second visits of decode
    candidates came out 1.10-1.14x their first in three full benchmark runs; 1.03x, 95% CI 0.99-1.08, with one
    fresh load per candidate load). Why several: where a load lands in memory moves its time, and a fresh load
    of the small decode reference brings that into every ratio: with one per candidate load, the decode loads'
    medians of one measurement spread by 6.8% against 2.0% beside the reference loaded once. With three, two full
    runs re-measured decode steps within 5.5% and 6.3% (noise floor; 8.6% with one fresh load, 10-14% with the
    reference loaded once), though their second visits still came out 1.03x and 1.05x the first (95% CIs
    1.00-1.06 and 1.02-1.08): less of the run's drift is left, not none."""

    run: Callable[[], Any]
    baseline_ms: float
    program: str | None = None  # the name in ``reference.PROGRAMS``, recorded on every row it corrected
    exponent: float = 1.0
    reload: Callable[[], Callable[[], Any]] | None = None
    fresh_runs: tuple[Callable[[], Any], ...] = ()  # fresh loads' runs, one per block in turn; none: ``run``

    def fresh(self) -> Reference:
        """This reference on fresh loads of its program (itself when it cannot reload)."""
        if self.reload is None:
            return self
        return replace(self, fresh_runs=tuple(self.reload() for _ in range(FRESH_REFERENCE_LOADS)))

    def block_run(self, block: int) -> Callable[[], Any]:
        """The run of the load that block number ``block`` times."""
        return self.fresh_runs[block % len(self.fresh_runs)] if self.fresh_runs else self.run

    def correction(self, reference_ms: float) -> float:
        """The factor a sample timed beside a reference block of ``reference_ms`` is multiplied by."""
        return (self.baseline_ms / reference_ms) ** self.exponent


@dataclass
class Timing:
    """Summary of one measurement (milliseconds) and whether it met the protocol's precision."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    cv: float
    ci_half_width: float
    samples_ms: list[float]
    stable: bool
    attempts: int = 1
    history: list[dict[str, float]] = field(default_factory=list)
    raw_median_ms: float | None = None  # with a reference: the uncorrected median
    reference_median_ms: float | None = None  # with a reference: its median during this measurement
    load_medians_ms: list[float] = field(default_factory=list)  # one per load, when there was more than one


def median_ci_half_width(samples: np.ndarray) -> float:
    """Half-width of the median's 95% CI relative to the median (inf when too few samples)."""
    interval = stats.quantile_test(samples, q=float(np.median(samples)), p=0.5).confidence_interval(0.95)
    if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        return float("inf")
    return float((interval.high - interval.low) / 2 / np.median(samples))


def summarize(samples_ms: list[float], ci_target: float) -> Timing:
    values = np.asarray(samples_ms, dtype=float)
    half_width = median_ci_half_width(values)
    return Timing(
        median_ms=float(np.median(values)),
        p10_ms=float(np.percentile(values, 10)),
        p90_ms=float(np.percentile(values, 90)),
        cv=float(values.std(ddof=1) / values.mean()) if len(values) > 1 else 0.0,
        ci_half_width=half_width,
        samples_ms=[round(v, 5) for v in samples_ms],
        stable=half_width <= ci_target,
    )


def _timed_ms(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000.0


def _warm(run: Callable[[], Any]) -> None:
    for _ in range(BLOCK_WARMUP):
        run()


def time_once(run: Callable[[], Any], config: ProtocolConfig, reference: Reference | None = None) -> Timing:
    """One attempt: warm up, then time ``run`` in blocks of ``BLOCK`` samples until the median's CI is narrow
    enough (after at least ``min_time_s``) or time runs out. With a ``reference``, each block is preceded by a
    block of the reference, and each sample is divided by that block's reference median. Both blocks start with
    ``BLOCK_WARMUP`` untimed runs, so each program is timed warm, as it runs back to back (a decode step after
    the previous one), not just after the other evicted it from the caches."""
    for _ in range(config.warmup):
        run()
        if reference is not None:
            reference.block_run(0)()
    samples: list[float] = []  # raw, or drift-corrected with a reference
    raw: list[float] = []
    references: list[float] = []  # one median per block
    started = time.perf_counter()
    deadline = started + config.time_cap_s
    while len(samples) < config.max_repeats:
        if reference is not None:
            reference_run = reference.block_run(len(references))
            _warm(reference_run)
            references.append(float(np.median([_timed_ms(reference_run) for _ in range(BLOCK)])))
            _warm(run)
        for _ in range(min(BLOCK, config.max_repeats - len(samples))):
            raw.append(_timed_ms(run))
            samples.append(raw[-1] if reference is None else raw[-1] * reference.correction(references[-1]))
        if len(samples) < config.min_repeats:
            continue
        # Checking the interval costs ~0.1 ms, so it is done once per block.
        now = time.perf_counter()
        if now > deadline:
            break
        if now - started >= config.min_time_s and median_ci_half_width(np.asarray(samples)) <= config.ci_half_width:
            break
    timing = summarize(samples, config.ci_half_width)
    if reference is not None:
        timing.raw_median_ms = float(np.median(raw))
        timing.reference_median_ms = float(np.median(references))
    return timing


def measure(
    run: Callable[[], Any],
    config: ProtocolConfig,
    reference: Reference | None = None,
    reload: Callable[[], Callable[[], Any]] | None = None,
) -> Timing:
    """Time ``run`` by the protocol (drift-corrected by ``reference`` when given). With ``reload`` (a fresh load
    of the same program, returning its ``run``), ``config.loads`` loads are timed and combined; without it the
    one load there is. A load left unstable ends the measurement: it cannot be used whatever the others give."""
    timings = [_measure_load(run, config, reference)]
    while reload is not None and timings[-1].stable and len(timings) < config.loads:
        timings.append(_measure_load(reload(), config, reference))
    return timings[0] if len(timings) == 1 else combine_loads(timings, config.ci_half_width)


def release_freed_memory() -> None:
    """Collect Python's garbage and hand the heap's free memory back to the system (glibc only; elsewhere the
    collection alone), so that what is loaded next lands in a heap like the one a fresh process has."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError):  # no C library to open, or not glibc
        return None


def measure_prepared(prepared: PreparedGraph, config: ProtocolConfig, reference: Reference | None = None) -> Timing:
    """Time an exported graph by the protocol after releasing what its export freed, every load a fresh one
    (the load made during export sits in the heap the export fragmented). A backend that cannot reload times the
    load it has."""
    release_freed_memory()
    if prepared.reload is None:
        return measure(prepared.run, config, reference)
    return measure(prepared.reload(), config, reference, prepared.reload)


def _measure_load(run: Callable[[], Any], config: ProtocolConfig, reference: Reference | None) -> Timing:
    """One load timed (beside fresh loads of the reference, see ``Reference``), re-measuring an unstable result;
    the last one is returned flagged."""
    reference = reference.fresh() if reference is not None else None
    history: list[dict[str, float]] = []
    while True:
        timing = time_once(run, config, reference)
        history.append({"median_ms": timing.median_ms, "ci_half_width": timing.ci_half_width})
        if timing.stable or len(history) == config.attempts:
            timing.attempts, timing.history = len(history), history
            return timing


def combine_loads(timings: list[Timing], ci_target: float) -> Timing:
    """Several loads' timings as one: the median of their medians, spread over all their samples, and stable
    only when every load was."""
    combined = summarize([sample for timing in timings for sample in timing.samples_ms], ci_target)
    combined.load_medians_ms = [timing.median_ms for timing in timings]
    combined.median_ms = float(np.median(combined.load_medians_ms))
    combined.ci_half_width = max(timing.ci_half_width for timing in timings)
    combined.stable = all(timing.stable for timing in timings)
    combined.attempts = sum(timing.attempts for timing in timings)
    combined.history = [{**entry, "load": load} for load, timing in enumerate(timings) for entry in timing.history]
    if timings[0].raw_median_ms is not None:
        combined.raw_median_ms = float(np.median([timing.raw_median_ms for timing in timings]))
        combined.reference_median_ms = float(np.median([timing.reference_median_ms for timing in timings]))
    return combined


#: The label (``extra["timing"]``) of rows timed beside fresh loads of the reference (``Reference``). Rows of the
#: protocol before, timed beside the reference loaded once, carry ``KEPT_REFERENCE_LABEL`` and are another kind: a
#: candidate timed alternately under both came out 4.8% higher beside fresh loads on a quiet host (six rounds each)
#: and 9% higher on a busy one (four rounds), so the cache never serves one as the other and no predictor is fitted
#: on both. PyTorch eager cannot reload, so its timing did not change, but its rows take the new label too.
DRIFT_CORRECTED = "drift-corrected-2"
KEPT_REFERENCE_LABEL = "drift-corrected"


def timing_label(config: ProtocolConfig) -> str:
    """How a protocol's rows are timed: drift-corrected rows are scaled to the reference's baseline, raw rows are
    wall-clock; the measurement cache never mixes the two, nor the two generations of drift correction."""
    return DRIFT_CORRECTED if config.drift_reference else "raw"


def drift_fields(timing: Timing, reference: Reference | None) -> dict[str, float | str]:
    """How a row was timed and, when drift-corrected, what by: the raw median, the reference's time against
    its baseline and the exponent of the correction."""
    if reference is None:
        return {"timing": "raw"}
    return {
        "timing": DRIFT_CORRECTED,
        "raw_median_ms": timing.raw_median_ms,
        "reference_ms": timing.reference_median_ms,
        "reference_baseline_ms": reference.baseline_ms,
        "drift": timing.reference_median_ms / reference.baseline_ms,
        "drift_exponent": reference.exponent,
        **({"reference_program": reference.program} if reference.program else {}),
    }


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_model() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_fingerprint(versions: dict[str, str], config: ProtocolConfig) -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, frequency governor, kernel, libraries and threads."""
    return {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "unknown",
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "threads": config.threads,
        "protocol": config.model_dump(),
        **{f"{name}_version": value for name, value in versions.items()},
    }
