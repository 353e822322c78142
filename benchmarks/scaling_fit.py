"""Scaling-law benchmark: a mini-sweep of tiny byte-level LMs, then every D_eff form fitted against raw D.

    python -m benchmarks.scaling_fit [--quick]

``--quick`` runs the built-in ``quick`` sweep (4 sizes x 4 datasets at 64K tokens; about a minute on
2 free cores once the corpus and teacher are cached), the default runs ``mini`` (5 sizes up to 393K
tokens; about twenty minutes). Prints the fitted constants with 95% bootstrap intervals, the held-out
extrapolation error at the largest N, Pearson/Spearman, fit times, and the issue's targets.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

TARGET_HELD_OUT = 0.05
TARGET_PEARSON = 0.9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the one-minute sweep")
    parser.add_argument("--db-url", help="store to write to (default: a temporary SQLite file)")
    parser.add_argument("--bootstrap", type=int, help="resamples (default: 30 quick, 200 full)")
    args = parser.parse_args(argv)

    from search.scaling.cli import constants_table, reports_table
    from search.scaling.evaluation import evaluate_forms
    from search.scaling.plots import attach_figures
    from search.scaling.spec import load_sweep_spec
    from search.scaling.store import save_reports, sweep_data
    from search.scaling.sweep import run_sweep

    console = Console(width=150)
    db_url = args.db_url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='scaling-bench-')) / 'store.db'}"
    spec = load_sweep_spec("quick" if args.quick else "mini")
    started = time.perf_counter()
    sweep_id = run_sweep(
        spec, db_url, say=lambda line: console.print(f"[{time.perf_counter() - started:4.0f}s] {line}", highlight=False)
    )
    sweep_seconds = time.perf_counter() - started
    data = sweep_data(db_url, sweep_id)

    started = time.perf_counter()
    reports = evaluate_forms(data, n_resamples=args.bootstrap or (30 if args.quick else 200))
    evaluate_seconds = time.perf_counter() - started
    for report in reports:
        attach_figures(data, report)
    save_reports(db_url, reports, f"sweep:{sweep_id}", sweep_id=sweep_id)

    title = f"{spec.name} sweep: {len(data)} points, {len(data.sizes)} sizes, {spec.token_budget:,} tokens max"
    console.print(constants_table(reports))
    console.print(reports_table(reports, title=title))
    console.print(_targets(reports))
    console.print(
        f"sweep {sweep_seconds:.0f}s wall (corpus, teacher, datasets, {len(spec.sizes) * len(spec.datasets)} runs); "
        f"fits + bootstrap + held-out refits {evaluate_seconds:.1f}s; store {db_url}"
    )


def _targets(reports: list) -> Table:  # list[LawReport]
    raw = reports[0]
    quality = [r for r in reports[1:] if r.held_out.mean_rel_error is not None]
    fitted = [r for r in reports if r.held_out.mean_rel_error is not None]
    best = min(fitted, key=lambda r: r.held_out.mean_rel_error) if fitted else None
    best_quality = min(quality, key=lambda r: r.held_out.mean_rel_error) if quality else None
    table = Table("target", "measured", "met", title="issue 8 targets")

    def row(name: str, measured: str, met: bool) -> None:
        table.add_row(name, measured, "[green]yes[/]" if met else "[red]no[/]")

    if best is not None:
        error = best.held_out.mean_rel_error
        row(
            f"held-out error <= {TARGET_HELD_OUT:.0%} (best form)",
            f"{error:.2%} ({best.form.name})",
            error <= TARGET_HELD_OUT,
        )
        row(
            f"Pearson >= {TARGET_PEARSON} (same form)",
            f"{best.overall.pearson:.3f}",
            best.overall.pearson >= TARGET_PEARSON,
        )
    if best_quality is not None and raw.held_out.mean_rel_error is not None:
        ours, theirs = best_quality.held_out.mean_rel_error, raw.held_out.mean_rel_error
        row(
            "best D_eff form beats raw D on held-out error",
            f"{best_quality.form.name} {ours:.2%} vs raw {theirs:.2%}",
            ours < theirs,
        )
    return table


if __name__ == "__main__":
    main()
