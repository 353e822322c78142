"""How accurate are the latency predictors on ExecuTorch/XNNPACK, and what does a measurement cost?

``python -m benchmarks.latency_model [--quick]`` measures a calibration set (maximin design, then
uncertainty-driven), a random held-out set and an out-of-range set (every architecture larger than
any calibration one) of random MobileLLM-Flash candidates on ``executorch-xnnpack``, the last two at random
moments of the calibration (``visit_schedule``), re-measures the held-out set at other moments for the noise
floor, fits every predictor per phase and prints one row per predictor and phase. Targets (issue 3), with at
most 64 calibration architectures: within +-10% >= 95% and Kendall tau >= 0.9 on the random held-out split for
prefill and decode; the best predictor's MAPE within 1.5x the noise floor. A held-out candidate's label is
the geometric mean of its two visits (``held_out_labels``): one visit brings the host's state at that moment
into the label; the report also scores against first visits alone. The drift correction's exponent is
fitted per phase on the calibration rows alone (``drift_exponent``), and every latency scored, held-out and
re-measured ones included, is converted to it; the report also says what dividing by the reference (exponent 1)
would have given, and whether the re-measurements drifted away from the first measurements as a whole
(``metrics.revisit_shift``).

``--save FILE`` keeps every measurement (JSON); ``--from FILE`` fits and scores the predictors on saved
measurements without touching the device, so a change to the predictors can be compared on the same data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress

from latency_models.backends import Backend, get_backend
from latency_models.calibration import (
    MIN_GP_ROWS,
    Candidate,
    PredictorReport,
    calibrate,
    calibration_design,
    candidate_pool,
    evaluate_predictors,
)
from latency_models.device_profile import measure_peaks
from latency_models.drift_exponent import FULL, at_exponent, describe, fit_exponent, rows_at_exponent
from latency_models.export_pool import ExportPool, flash_jobs, usable_cores
from latency_models.measure import PHASES, PhaseResult, measure_architecture
from latency_models.metrics import elasticity, noise_floor, revisit_shift
from latency_models.predictors import cache_knee, describe_cache_knee
from latency_models.protocol import ProtocolConfig, Reference, drift_fields, measure_prepared
from latency_models.reference import drift_reference, export_reference, reference_kind
from latency_models.tables import LEGEND, add_metrics_row, metrics_table
from search.families.mobilellm_flash.space import SpaceOptions, default_space
from search.space import CategoricalParam, IntParam, SearchSpace

console = Console()
if not console.is_terminal:  # a log file: keep the table's 14 columns readable
    console = Console(width=190)


def benchmark_space(quick: bool, max_layers: int) -> SearchSpace:
    """The default space with depth capped so that one export takes seconds on a shared CPU (about 1.5 s plus
    2.5 s per attention layer for --quick's tiny graphs: --quick keeps to one layer, whose width, attention and
    KV length still vary, so that its 14 exports fit in its minute)."""
    space = default_space()
    params = dict(space.params)
    params["n_layers"] = IntParam(low=1, high=1) if quick else IntParam(low=2, high=max_layers)
    if quick:
        params["dim"] = CategoricalParam(choices=[64, 128])
        params["block_repeat"] = CategoricalParam(choices=[1])
    return SearchSpace(params=params)


@dataclass
class Measurements:
    """Everything the device gave one run: what the predictors are fitted and scored on, and what it cost."""

    calibration: list[dict[str, Any]]
    held_out: list[dict[str, Any]]
    out_of_range: list[dict[str, Any]]
    # Pairs are tuples when measured and lists when read back from a --save file; both index alike.
    noise: dict[str, list[tuple[float, float]]]  # per phase: (first, again) medians of re-measured held-out ones
    peaks: dict[str, float]
    costs: list[tuple[float, float]]  # per candidate: (export s, measurement s)
    drifts: list[float]  # a reference's time over its baseline, per measurement
    reference_baselines_ms: dict[str, float]  # per reference kind (prefill, decode rungs) its baseline (none when raw)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    # Per phase, per noise pair: how its two measurements were timed (``drift_fields``); absent in older files.
    noise_timing: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = field(default_factory=dict)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="six one-layer architectures, one load per program (within a minute on 2 cores: exporting dominates)",
    )
    parser.add_argument("--calibration", type=int, default=None, help="calibration architectures (<= 64)")
    parser.add_argument("--held-out", type=int, default=None)
    parser.add_argument("--out-of-range", type=int, default=None)
    parser.add_argument(
        "--noise", type=int, default=None, help="held-out architectures re-measured later in the run (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-layers", type=int, default=8, help="deepest candidate (export time grows with depth)")
    parser.add_argument("--raw", action="store_true", help="no drift reference: raw medians, as before it existed")
    parser.add_argument("--loads", type=int, default=None, help="fresh loads per program (protocol default if unset)")
    parser.add_argument("--min-time", type=float, default=None, help="timed seconds per load before it may stop")
    parser.add_argument(
        "--export-workers",
        type=int,
        default=usable_cores(),
        help="processes that export graphs while none is timed (default: one per usable core; 0: export in the "
        "timing process)",
    )
    parser.add_argument("--save", type=Path, default=None, help="write every measurement to this JSON file")
    parser.add_argument("--from", dest="source", type=Path, default=None, help="refit on a --save file; no device")
    return parser.parse_args()


def benchmark_protocol(args: argparse.Namespace) -> ProtocolConfig:
    """The protocol of a full run, or a looser one for --quick, with the command line's overrides."""
    # --quick is a smoke run: a looser precision target so that a busy machine still yields numbers, and one
    # short load per program (a second load, with its fresh reference loads, cost 10 s of its minute).
    # Sub-millisecond decode steps need thousands of repeats before the median's CI narrows.
    protocol = (
        ProtocolConfig(time_cap_s=1.0, attempts=2, ci_half_width=0.05, max_repeats=3000, loads=1, min_time_s=0.1)
        if args.quick
        else ProtocolConfig(max_repeats=3000)
    )
    try:
        return protocol.with_changes(drift_reference=not args.raw, loads=args.loads, min_time_s=args.min_time)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise SystemExit(f"Bad protocol option {error['loc'][0]}: {error['msg'].lower()}.") from None


@dataclass(frozen=True)
class Visit:
    """One turn of a held-out or out-of-range candidate at the device: its measurement, or (``again``) its
    re-measurement for the noise floor."""

    candidate: Candidate
    again: bool = False


#: A re-measured candidate's two visits lie at least this share of the run apart (so re-measuring means another
#: moment of the host, not the same one twice).
MIN_REVISIT_GAP = 0.25


def visit_schedule(
    n_calibration: int, visited: list[Candidate], revisited: list[Candidate], rng: np.random.Generator
) -> list[list[Visit]]:
    """When each held-out and out-of-range candidate is measured: ``n_calibration + 1`` lists, the visits made
    before each calibration step and (the last) after the calibration.

    A shared host drifts by 10% and more over the half hour of a run. Timed in one block before the calibration,
    as this benchmark once did, the held-out set saw one stretch of that drift and the predictors, fitted on rows
    from the whole run, another: a bias of the order of the drift between the blocks. So every visit takes a random
    moment of the run (uniform over its calibration steps), as the calibration rows do; each ``revisited``
    candidate gets two moments at least ``MIN_REVISIT_GAP`` of the run apart, the first for its held-out row and
    the second for the noise floor."""
    times: list[tuple[float, Visit]] = []
    revisited_keys = {candidate.key for candidate in revisited}
    for candidate in visited:
        if candidate.key in revisited_keys:
            first, again = sorted(rng.uniform(size=2))
            while again - first < MIN_REVISIT_GAP:
                first, again = sorted(rng.uniform(size=2))
            times += [(first, Visit(candidate)), (again, Visit(candidate, again=True))]
        else:
            times.append((float(rng.uniform()), Visit(candidate)))
    times.sort(key=lambda pair: pair[0])
    steps = [(i + 0.5) / n_calibration for i in range(n_calibration)] + [float("inf")]
    slots: list[list[Visit]] = [[] for _ in steps]
    for moment, visit in times:
        slots[next(i for i, step in enumerate(steps) if moment < step)].append(visit)
    return slots


def measure_all(args: argparse.Namespace, protocol: ProtocolConfig) -> Measurements:
    """Calibrate, measure the held-out and out-of-range sets, and re-measure held-out ones for the noise floor.

    The held-out and out-of-range measurements and the re-measurements are spread at random over the calibration
    (``visit_schedule``), so that every set sees the same drift of the host. Graphs are exported by
    ``--export-workers`` processes, all known ones at once (the references, the held-out and out-of-range sets,
    the calibration design), then each uncertainty-chosen candidate's phases side by side; timing starts only
    when no export is running. The device's peaks are measured last, on a quiet CPU.
    """
    quick = args.quick
    n_cal = args.calibration or (3 if quick else 40)
    n_held = args.held_out or (2 if quick else 24)
    n_oor = args.out_of_range or (1 if quick else 8)
    n_noise = min(args.noise or n_held, n_held)
    options = SpaceOptions(vocab_size=512 if quick else 4096)
    started = time.perf_counter()

    backend = get_backend("executorch-xnnpack")
    backend.set_threads(protocol.threads)
    pool = candidate_pool(benchmark_space(quick, args.max_layers), 60 if quick else 600, args.seed, options)
    sizes = np.array([c.arch.n_params() for c in pool])
    threshold = np.quantile(sizes, 0.75)
    inside = [c for c, s in zip(pool, sizes, strict=True) if s < threshold]
    outside = [c for c, s in zip(pool, sizes, strict=True) if s >= threshold]
    rng = np.random.default_rng(args.seed)
    held_idx = set(rng.choice(len(inside), n_held, replace=False).tolist())
    held = [inside[i] for i in sorted(held_idx)]
    held_keys = {c.key for c in held}
    noise_keys = {c.key for c in held[:n_noise]}
    calibration_pool = [c for i, c in enumerate(inside) if i not in held_idx]
    oor = [outside[i] for i in rng.choice(len(outside), n_oor, replace=False)]
    schedule = visit_schedule(n_cal, held + oor, held[:n_noise], rng)

    costs: list[tuple[float, float]] = []
    drifts: list[float] = []
    kept: dict[tuple, dict[str, tuple[PhaseResult, Reference | None]]] = {}  # with the reference that timed it
    kinds = sorted({reference_kind(phase, c.arch) for c in held + oor + calibration_pool for phase in PHASES})
    workroot = Path(tempfile.mkdtemp(prefix="hilnas-latency-bench-"))
    exports = ExportPool(backend.name, protocol.threads, args.export_workers) if args.export_workers else None

    def workdir(candidate: Candidate) -> Path:
        """One folder per candidate: the same architecture at another shape is another pair of programs."""
        arch_hash, prefill_len, decode_kv_len = candidate.key
        return workroot / f"{arch_hash[:12]}-p{prefill_len}-kv{decode_kv_len}"

    def export_ahead(candidates: list[Candidate]) -> None:
        for candidate in candidates if exports is not None else []:
            exports.submit(candidate.key, flash_jobs(candidate.arch, candidate.workload, workdir(candidate)))

    def measure_candidate(candidate: Candidate) -> dict[str, dict]:
        export_ahead([candidate])
        exported = exports.take(candidate.key) if exports is not None else None
        timed_beside = {phase: references[reference_kind(phase, candidate.arch)] for phase in PHASES}
        results = measure_architecture(
            candidate.arch,
            candidate.workload,
            backend,
            "local-cpu",
            protocol,
            workdir(candidate),
            references=timed_beside,
            exported=exported,
        )
        costs.append(tuple(sum(r.row["extra"][k] for r in results.values()) for k in ("export_s", "measure_s")))
        drifts.extend(r.row["extra"]["drift"] for r in results.values() if "drift" in r.row["extra"])
        unstable = [p for p, r in results.items() if not r.row["stable"]]
        if unstable:
            raise RuntimeError(f"unstable {unstable} after {protocol.attempts} attempts")
        if candidate.key in noise_keys:  # re-measured later (``visit_schedule``)
            kept[candidate.key] = {phase: (result, timed_beside[phase]) for phase, result in results.items()}
        return {phase: r.row for phase, r in results.items()}

    held_rows: list[dict[str, Any]] = []
    oor_rows: list[dict[str, Any]] = []
    failures: list[str] = []
    noise: dict[str, list[tuple[float, float]]] = {p: [] for p in PHASES}
    noise_timing: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {p: [] for p in PHASES}

    def make_visit(visit: Visit) -> None:
        """Measure a held-out or out-of-range candidate, or re-measure a held-out one (the program it loaded the
        first time, beside the same reference); a failure is noted and the run goes on."""
        candidate = visit.candidate
        if visit.again:
            for phase, (result, reference) in kept.pop(candidate.key, {}).items():  # nothing when the first failed
                again = measure_prepared(result.prepared, protocol, reference)
                noise[phase].append((result.timing.median_ms, again.median_ms))
                noise_timing[phase].append((drift_fields(result.timing, reference), drift_fields(again, reference)))
            return
        label, sink = ("held-out", held_rows) if candidate.key in held_keys else ("out-of-range", oor_rows)
        try:
            sink.extend(measure_candidate(candidate).values())
        except RuntimeError as exc:  # an export failure or unstable device: note it, go on
            failures.append(f"{label} {candidate.key[0][:12]}: {type(exc).__name__}: {exc}")

    if exports is not None and protocol.drift_reference:
        for kind in kinds:
            export_reference(exports, kind)
    n_initial = max(MIN_GP_ROWS, n_cal // 2)
    design = calibration_design(calibration_pool, n_cal, n_initial, args.seed)
    export_ahead(held + oor + [calibration_pool[index] for index in design])
    with exports or nullcontext(), Progress(console=console, transient=True) as progress:
        # Once every export queued so far is done (the CPU is quiet): load the references, measure their baselines.
        references = load_references(kinds, backend, protocol, exports, 0 if quick else None)  # by kind
        task = progress.add_task("measuring", total=n_cal + sum(len(slot) for slot in schedule))
        slots = iter(schedule)

        def visits_then_calibration_step(candidate: Candidate) -> dict[str, dict]:
            for visit in next(slots, []):
                make_visit(visit)
                progress.advance(task)
            try:
                return measure_candidate(candidate)
            finally:
                progress.advance(task)

        calibration = calibrate(calibration_pool, visits_then_calibration_step, n_cal, n_initial, seed=args.seed)
        failures += calibration.failures
        for visit in (visit for slot in slots for visit in slot):  # after the last calibration step
            make_visit(visit)
            progress.advance(task)
        peaks = measure_peaks(protocol)  # before the workers exit: shutting them down takes the CPU for seconds
    shutil.rmtree(workroot, ignore_errors=True)  # the exported .pte files were only needed for timing
    return Measurements(
        calibration=calibration.rows,
        held_out=held_rows,
        out_of_range=oor_rows,
        noise=noise,
        noise_timing=noise_timing,
        peaks=peaks,
        costs=costs,
        drifts=drifts,
        reference_baselines_ms={p: r.baseline_ms for p, r in references.items() if r is not None},
        failures=failures,
        wall_s=time.perf_counter() - started,
    )


def load_references(
    kinds: list[str],
    backend: Backend,
    protocol: ProtocolConfig,
    exports: ExportPool | None,
    baseline_span_s: float | None,
) -> dict[str, Reference | None]:
    """The drift reference of every kind the candidates need, or one sentence and an exit when one cannot be
    built: without it every candidate timed beside it would fail, one by one."""
    references = {}
    for kind in kinds:
        try:
            references[kind] = drift_reference(
                backend, "local-cpu", protocol, kind=kind, exporter=exports, baseline_span_s=baseline_span_s
            )
        except (RuntimeError, ValueError) as exc:  # export, load or check failed, or no such kind: nothing to time by
            reason = f"{type(exc).__name__}: {exc}".rstrip(".")
            raise SystemExit(
                f"The {kind} drift reference could not be built ({reason}); nothing was measured."
            ) from None
    return references


def scored_line(reports: list[PredictorReport], with_chosen: bool = True) -> str:
    """The held-out figures of the best predictor (lowest MAPE) and, with ``with_chosen``, the CV-chosen one."""
    best = min(reports, key=lambda r: r.metrics["random"]["mape"])
    chosen = [("CV-chosen", next(r for r in reports if r.selected))] if with_chosen else []
    return ", ".join(
        f"{label} {one.name}: MAPE {one.metrics['random']['mape']:.2f}%, within ±10% "
        f"{one.metrics['random']['within_10']:.0%}, tau {one.metrics['random']['kendall_tau']:.3f}"
        for label, one in [("best", best), *chosen]
    )


def dividing_verdict(
    phase: str, train: list[dict[str, Any]], measurements: Measurements, out_of_range: list[dict[str, Any]]
) -> str:
    """What the same rows give when every latency divides by the reference (exponent 1, as before it was fitted)."""
    train, out_of_range = rows_at_exponent(train, FULL), rows_at_exponent(out_of_range, FULL)
    held_out = held_out_labels(measurements, phase, FULL)
    reports = evaluate_predictors(train, measurements.peaks, held_out, out_of_range or None, fit_drift=False)
    pairs = noise_pairs(measurements, phase, FULL)
    floor = noise_floor(pairs[:, 0], pairs[:, 1])["mape"] if len(pairs) > 1 else float("nan")
    scored = scored_line(reports, with_chosen=False)
    return f"{phase} dividing by the reference instead: {scored}, noise floor {floor:.2f}%"


def drift_elasticity(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[float, int] | None:
    """The ``metrics.elasticity`` of the drift-corrected noise pairs: each candidate's raw second / first time on
    its reference's, and how many pairs there were; None where it is (too few pairs, a reference that barely
    moved)."""
    usable = [(first, again) for first, again in pairs if first.get("timing", "raw") != "raw"]  # either generation
    slope = elasticity(
        [again["raw_median_ms"] / first["raw_median_ms"] for first, again in usable],
        [again["reference_ms"] / first["reference_ms"] for first, again in usable],
    )
    return None if slope is None else (slope, len(usable))


def noise_pairs(measurements: Measurements, phase: str, exponent: float) -> np.ndarray:
    """The (first, again) medians of the re-measured held-out candidates of ``phase`` at the drift ``exponent``
    the predictors were fitted with (as timed, in files saved before the pairs' drift was kept)."""
    pairs = np.array(measurements.noise[phase], float).reshape(-1, 2)
    timing = measurements.noise_timing.get(phase)
    if not timing:
        return pairs
    return np.array(
        [
            [
                at_exponent({"median_ms": ms, "extra": fields}, exponent)["median_ms"]
                for ms, fields in zip(pair, how, strict=True)
            ]
            for pair, how in zip(pairs, timing, strict=True)
        ]
    ).reshape(-1, 2)


def describe_shift(phase: str, shift: dict[str, float]) -> str:
    """One sentence on ``metrics.revisit_shift``: did the second visits drift away from the first as a whole?"""
    systematic = shift["low"] > 1 or shift["high"] < 1
    verdict = (
        "a drift of the run that the reference did not follow, which the noise floor counts as noise"
        if systematic
        else "no systematic change between visits"
    )
    return (
        f"{phase}: a re-measured candidate's second measurement came out {shift['ratio']:.3f}x its first (geometric "
        f"mean over {shift['n']:.0f} pairs, 95% CI {shift['low']:.3f}-{shift['high']:.3f}; "
        f"{shift['share_slower']:.0%} slower): {verdict}."
    )


def held_out_labels(measurements: Measurements, phase: str, exponent: float) -> list[dict[str, Any]]:
    """The held-out rows of ``phase`` at the drift ``exponent``, each labelled with the geometric mean of its
    visits: both where it was re-measured (random moments of the run at least ``MIN_REVISIT_GAP`` apart), the one
    otherwise. Why both: one visit brings the host's state at that moment into the label (the noise floor, the
    error of one re-measurement, was 4.8-14% in full runs), and a predictor is scored against the device, not
    against one moment of it; at random moments the mean carries no direction of the run's drift. A row finds its
    pair by its own median, the pair's first value."""
    pairs = noise_pairs(measurements, phase, exponent)
    firsts = np.array(measurements.noise[phase], float).reshape(-1, 2)[:, 0]
    rows = []
    for row in measurements.held_out:
        if row["phase"] != phase:
            continue
        converted = at_exponent(row, exponent)
        match = np.flatnonzero(firsts == row["median_ms"])
        if len(match) == 1:
            first, again = pairs[match[0]]
            converted = {**converted, "median_ms": float(np.sqrt(first * again)), "samples_ms": None, "visits": 2}
        rows.append(converted)
    return rows


def first_visit_verdict(
    phase: str,
    train: list[dict[str, Any]],
    measurements: Measurements,
    exponent: float,
    out_of_range: list[dict[str, Any]],
) -> str | None:
    """The random held-out split scored against each candidate's first visit alone (None without held-out
    rows); ``train`` and ``out_of_range`` are already at ``exponent``."""
    rows = rows_at_exponent([row for row in measurements.held_out if row["phase"] == phase], exponent)
    if not rows:
        return None
    reports = evaluate_predictors(train, measurements.peaks, rows, out_of_range or None, fit_drift=False)
    return f"{phase} against first visits only (one measurement per held-out candidate): {scored_line(reports)}"


def report(measurements: Measurements) -> None:
    """Fit every predictor per phase (the drift exponent first, on the calibration rows alone) and print the
    metrics table, the verdicts, what dividing by the reference would have given, and what measuring cost."""
    table = metrics_table("Latency predictors on executorch-xnnpack (local-cpu, 1 thread)")
    verdicts = []
    for phase in PHASES:
        train = [r for r in measurements.calibration if r["phase"] == phase]
        oor_phase = [r for r in measurements.out_of_range if r["phase"] == phase]
        if len(train) < 3:
            verdicts.append(f"{phase}: only {len(train)} stable calibration measurements; nothing to fit")
            continue
        drift = fit_exponent(train)  # on the calibration rows alone; every row scored is converted to it
        train_at, oor_at = rows_at_exponent(train, drift.exponent), rows_at_exponent(oor_phase, drift.exponent)
        held = held_out_labels(measurements, phase, drift.exponent)
        reports = evaluate_predictors(train_at, measurements.peaks, held or None, oor_at or None, fit_drift=False)
        pairs = noise_pairs(measurements, phase, drift.exponent)
        noise = noise_floor(pairs[:, 0], pairs[:, 1]) if len(pairs) > 1 else None
        verdicts.append(describe(phase, drift.as_metrics()))
        if drift.exponent != FULL and held:
            verdicts.append(dividing_verdict(phase, train, measurements, oor_phase))
        first_visits = first_visit_verdict(phase, train_at, measurements, drift.exponent, oor_at)
        if first_visits is not None:
            verdicts.append(first_visits)
        for one in reports:
            metrics = {**one.metrics, "noise_floor": noise}
            add_metrics_row(table, phase, one.name, one.selected, one.n_train, metrics, one.cv_mape)
        chosen = next(r for r in reports if r.selected)
        verdicts.append(f"{describe_cache_knee(phase, cache_knee(chosen.predictor))} ({chosen.name})")
        best = min(reports, key=lambda r: r.metrics["random"]["mape"])
        rnd = best.metrics["random"]
        floor = noise["mape"] if noise else float("nan")  # nan when too few re-measurements
        two_visits = sum(row.get("visits") == 2 for row in held)
        verdicts.append(
            f"{phase}: best {best.name}: within ±10% {rnd['within_10']:.0%} (target ≥ 95%), "
            f"tau {rnd['kendall_tau']:.3f} (≥ 0.9), MAPE {rnd['mape']:.2f}% vs noise floor {floor:.2f}% "
            f"over {len(pairs)} re-measured (ratio {rnd['mape'] / floor:.2f}, target ≤ 1.5); labels: the mean of "
            f"both visits for {two_visits} of {len(held)} held-out candidates"
        )
        shift = revisit_shift(pairs[:, 0], pairs[:, 1])
        if shift is not None:
            verdicts.append(describe_shift(phase, shift))
    console.print(table)
    console.print(LEGEND)
    for line in verdicts:
        console.print(line)
    for phase, pairs in measurements.noise_timing.items():
        fitted = drift_elasticity(pairs)
        if fitted is not None:
            console.print(
                f"{phase}: between a re-measured candidate's two measurements its raw time moved {fitted[0]:.2f}x as "
                f"much as its reference's (log-log slope over {fitted[1]} pairs; 1 where dividing by the reference "
                "corrects exactly, below 1 where it over-corrects)."
            )
    export_s = np.array([c[0] for c in measurements.costs])
    measure_s = np.array([c[1] for c in measurements.costs])
    console.print(
        f"Measuring cost per candidate (prefill + decode): export {export_s.mean():.1f} s, "
        f"measurement {measure_s.mean():.1f} s (median {np.median(export_s + measure_s):.1f} s total, "
        f"{len(measurements.costs)} candidates); measuring wall time per candidate "
        f"{measurements.wall_s / max(len(measurements.costs), 1):.1f} s."
    )
    peaks = measurements.peaks
    console.print(
        f"Measurements used: {len(measurements.calibration)} calibration, {len(measurements.held_out)} held-out, "
        f"{len(measurements.out_of_range)} out-of-range rows; device peaks {peaks['peak_gflops']:.1f} GFLOP/s, "
        f"{peaks['bandwidth_gbs']:.1f} GB/s; {len(measurements.failures)} candidates failed; "
        f"measuring wall time {measurements.wall_s:.0f} s."
    )
    if measurements.drifts:
        low, mid, high = np.percentile(measurements.drifts, [0, 50, 100])
        baselines = ", ".join(f"{p} {ms:.3f} ms" for p, ms in measurements.reference_baselines_ms.items())
        console.print(
            f"Drift references (baselines {baselines}): their time during the measurements was {low:.2f}x to "
            f"{high:.2f}x their baselines (median {mid:.2f}x); prefills are corrected by the prefill reference, decode "
            "steps by the decode rung `reference_kind` picks for their size."
        )
    for failure in measurements.failures:
        console.print(f"  failed: {failure}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    if args.source is not None:
        if not args.source.is_file():
            raise SystemExit(f"No saved measurements at {args.source}; write them with --save first.")
        measurements = Measurements(**json.loads(args.source.read_text()))
        console.print(f"Refitted on the measurements saved in {args.source}; nothing was measured in this run.")
    else:
        measurements = measure_all(args, benchmark_protocol(args))
        if args.save is not None:
            args.save.write_text(json.dumps(asdict(measurements)))
    report(measurements)


if __name__ == "__main__":
    main()
