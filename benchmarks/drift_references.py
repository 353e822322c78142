"""How well each decode drift reference tracks decode steps of every size on this host.

    python -m benchmarks.drift_references [--quick] [--rounds N]

Exports the decode references of ``latency_models.reference`` (its ladder of rungs) and decode graphs of
about 1M to 31M parameters with ExecuTorch and XNNPACK, then times all of them in the same moments: round
after round, each program's median over short interleaved blocks (each block warmed up first, as the
protocol does). Between rounds other programs are loaded, run and dropped, as in a long calibration. A
reference serves a graph well when the graph's time divided by the reference's stays put over the rounds,
however the host's speed moves; so the table prints each graph's coefficient of variation over the rounds
raw, divided by every rung, and divided by the rung ``reference_kind`` picks for it. Dividing corrects fully
only when a graph slows by the same factor as its rung; the last column, the slope of the graph's log time on
the picked rung's log time over the rounds (its *elasticity*), says how much it actually slows when the rung does:
1 when dividing is right, below 1 when dividing over-corrects (``metrics.elasticity``; n/a where the rung barely
moved over the rounds, as on a quiet host, when the slope would fit noise).

What a calibration feels is the protocol's error, fresh loads included: before and after the rounds, every
graph is also measured by the protocol (``ProtocolConfig()``: five fresh loads, drift-corrected) beside the
smallest rung and beside the rung picked, and the second table prints how far the second measurement came
from the first, raw and with each reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from latency_models.backends import PreparedGraph, get_backend
from latency_models.measure import build_model, export_phase
from latency_models.metrics import elasticity
from latency_models.protocol import (
    BLOCK,
    BLOCK_WARMUP,
    ProtocolConfig,
    Reference,
    measure_prepared,
    release_freed_memory,
)
from latency_models.reference import DECODE_LADDER, reference_candidate, reference_kind, rung_params
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig, Workload

WORKLOAD = Workload(prefill_len=64, decode_kv_len=256)
#: Decode graphs (dim, layers, FFN width, vocabulary): 1.0M, 2.2M, 4.2M, 7.7M, 10.4M, 15.9M, 22.5M, 31.1M parameters.
GRAPHS = (
    (128, 4, 384, 2048),
    (160, 6, 512, 2048),
    (224, 6, 768, 2048),
    (256, 8, 896, 4096),
    (256, 10, 1024, 4096),
    (320, 10, 1280, 4096),
    (352, 12, 1408, 4096),
    (416, 12, 1664, 4096),
)
QUICK_GRAPHS = (GRAPHS[0], GRAPHS[4], GRAPHS[5])
#: Programs loaded, run and dropped between rounds (prefill and decode alternately), as a calibration does.
CHURN = tuple((64 + 32 * i, 2 + i, 256 + 128 * i, 2048) for i in range(4))


def graph_arch(dim: int, n_layers: int, ffn_dim: int, vocab_size: int) -> ArchConfig:
    layer = LayerConfig(n_heads=dim // 32, n_kv_heads=1, ffn_dim=ffn_dim)
    return ArchConfig(vocab_size=vocab_size, dim=dim, layers=[layer] * n_layers, max_context=320)


def timed_block(run: Callable[[], object]) -> list[float]:
    """``BLOCK`` timed runs (ms) after ``BLOCK_WARMUP`` untimed ones, as the protocol times each block."""
    for _ in range(BLOCK_WARMUP):
        run()
    samples = []
    for _ in range(BLOCK):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def churn(programs: list[PreparedGraph]) -> None:
    for program in programs:
        for _ in range(3):
            run = program.reload()
            for _ in range(30):
                run()
            del run
    release_freed_memory()


def protocol_pass(
    graphs: dict[str, ArchConfig], programs: dict[str, PreparedGraph], runs: dict[str, Callable[[], object]]
) -> dict[str, dict[str, float]]:
    """Per graph, its protocol median beside the smallest rung ("smallest"), beside the rung picked ("picked"),
    and the raw median of the first ("raw"). Baselines of 1 ms: only ratios between passes are compared."""
    protocol = ProtocolConfig()
    medians = {}
    for name, arch in graphs.items():
        beside_smallest = measure_prepared(programs[name], protocol, Reference(runs[DECODE_LADDER[0]], 1.0))
        rung = reference_kind("decode", arch)
        picked = (
            beside_smallest
            if rung == DECODE_LADDER[0]
            else measure_prepared(programs[name], protocol, Reference(runs[rung], 1.0))
        )
        medians[name] = {
            "raw": beside_smallest.raw_median_ms,
            "smallest": beside_smallest.median_ms,
            "picked": picked.median_ms,
        }
    return medians


def cv(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / values.mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three graphs, five rounds of 2 s")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 16; --quick 5)")
    parser.add_argument("--round-s", type=float, default=None, help="seconds of interleaved blocks per round (3; 2)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 16)
    round_s = args.round_s or (2.0 if args.quick else 3.0)
    if rounds < 3 or round_s <= 0:
        parser.exit(2, "--rounds must be at least 3 (a spread needs a few) and --round-s positive.\n")
    console = Console(width=150)
    started = time.perf_counter()

    backend = get_backend("executorch-xnnpack")
    backend.set_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="hilnas-drift-references-"))
    shapes = QUICK_GRAPHS if args.quick else GRAPHS
    graphs = {f"{graph_arch(*g).n_params() / 1e6:.1f}M": graph_arch(*g) for g in shapes}
    sources = {rung: reference_candidate(rung) for rung in DECODE_LADDER}
    sources |= {name: (arch, WORKLOAD) for name, arch in graphs.items()}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("exporting", total=len(sources) + len(CHURN))
        programs: dict[str, PreparedGraph] = {}
        for name, (arch, workload) in sources.items():
            programs[name] = export_phase(build_model(arch), workload, "decode", backend, workdir / name).prepared
            progress.advance(task)
        others = []
        for i, shape in enumerate(CHURN):
            phase = "decode" if i % 2 else "prefill"
            others.append(export_phase(build_model(graph_arch(*shape)), WORKLOAD, phase, backend, workdir / f"x{i}"))
            progress.advance(task)
        release_freed_memory()
        runs = {name: program.reload() for name, program in programs.items()}
        progress.add_task("measuring by the protocol", total=None)
        before, first_pass_s = protocol_pass(graphs, programs, runs), time.perf_counter()
        medians: dict[str, list[float]] = {name: [] for name in programs}
        task = progress.add_task("rounds", total=rounds)
        for _ in range(rounds):
            samples: dict[str, list[float]] = {name: [] for name in programs}
            deadline = time.perf_counter() + round_s
            while time.perf_counter() < deadline:
                for name, run in runs.items():
                    samples[name] += timed_block(run)
            for name in programs:
                medians[name].append(float(np.median(samples[name])))
            churn([other.prepared for other in others])
            progress.advance(task)
        progress.add_task("measuring by the protocol again", total=None)
        after, gap_s = protocol_pass(graphs, programs, runs), time.perf_counter() - first_pass_s

    times = {name: np.array(values) for name, values in medians.items()}
    table = Table(
        "decode graph", "ms", "raw", *(f"/ {rung} ({rung_params(rung) / 1e6:.1f}M)" for rung in DECODE_LADDER),
        "rung picked", "/ picked", "elasticity",
        title=f"Time over {rounds} rounds of {round_s:g} s: coefficient of variation, raw and divided by each rung",
    )  # fmt: skip
    picked_cvs, smallest_cvs, raw_cvs = [], [], []
    for name, arch in graphs.items():
        rung = reference_kind("decode", arch)
        ratios = {r: cv(times[name] / times[r]) for r in DECODE_LADDER}
        picked_cvs.append(ratios[rung])
        smallest_cvs.append(ratios[DECODE_LADDER[0]])
        raw_cvs.append(cv(times[name]))
        table.add_row(
            name, f"{times[name].mean():.3f}", f"{raw_cvs[-1]:.1%}", *(f"{ratios[r]:.1%}" for r in DECODE_LADDER),
            rung, f"{ratios[rung]:.1%}", _maybe(elasticity(times[name], times[rung])),
        )  # fmt: skip
    for rung in DECODE_LADDER:
        table.add_row(f"rung {rung}", f"{times[rung].mean():.3f}", f"{cv(times[rung]):.1%}")
    console.print(table)
    console.print(_remeasure_table(graphs, before, after, gap_s))
    console.print(
        f"CV over the rounds: raw {min(raw_cvs):.1%}-{max(raw_cvs):.1%}; divided by the smallest rung "
        f"{min(smallest_cvs):.1%}-{max(smallest_cvs):.1%} (median {np.median(smallest_cvs):.1%}); divided by the "
        f"rung picked {min(picked_cvs):.1%}-{max(picked_cvs):.1%} (median {np.median(picked_cvs):.1%}). "
        f"Wall time {time.perf_counter() - started:.0f} s."
    )


def _maybe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _remeasure_table(
    graphs: dict[str, ArchConfig], before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], gap_s: float
) -> Table:
    timings = ("raw", "smallest", "picked")
    table = Table(
        "decode graph", "rung picked", "raw", "beside the smallest rung", "beside the rung picked",
        title=f"Protocol measurement repeated {gap_s:.0f} s later: |second / first - 1|",
    )  # fmt: skip
    errors = {timing: [abs(after[name][timing] / before[name][timing] - 1) for name in graphs] for timing in timings}
    for index, (name, arch) in enumerate(graphs.items()):
        table.add_row(name, reference_kind("decode", arch), *(f"{errors[t][index]:.1%}" for t in timings))
    table.add_row("mean", "", *(f"{np.mean(errors[t]):.1%}" for t in timings))
    return table


if __name__ == "__main__":
    main()
