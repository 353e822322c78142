"""How a search scales with Ray workers, and how many workers one driver can keep busy.

(1) The same CPU-bound search (each trial burns a fixed amount of CPU time, ``work_clock: process``)
with 1 and then 2 trials evaluated at once on this machine's Ray; target speedup >= 1.8x.
(2) The driver's ceiling in trials per second: no-op trials through the hilnas driver, measured with
``benchmarks.driver_overhead``'s own run. A driver that finishes C trials per second keeps C x d
workers busy when a trial takes d seconds; that projection is printed for 1 s, 10 s and 60 s trials.
Run: ``python -m benchmarks.worker_scaling [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import optuna
import ray
from rich.console import Console
from rich.table import Table

from benchmarks.driver_overhead import hilnas_driver
from search.driver import SearchDriver
from search.spec import parse_spec

TRIAL_SECONDS = (1, 10, 60)


def cpu_bound_search(trials: int, work_ms: float, workers: int, db_url: str) -> float:
    """Wall seconds for ``trials`` trials of ``work_ms`` CPU milliseconds each, ``workers`` at a time."""
    spec = parse_spec(
        {
            "name": f"scaling-{workers}",
            "family": "moo-benchmark",
            "options": {"problem": "zdt1", "n_var": 2, "work_ms": work_ms, "work_clock": "process"},
            "sampler": {"name": "random", "seed": 0},
            "budget": {"trials": trials, "batch_size": 2 * workers, "max_concurrency": workers},
        }
    )
    driver = SearchDriver.start(spec, db_url)
    start = time.perf_counter()
    result = driver.run()
    elapsed = time.perf_counter() - start
    assert result.finished == trials and result.failed == 0, result
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter trials (about a minute)")
    args = parser.parse_args()
    trials, work_ms, ceiling_trials = (8, 400, 100) if args.quick else (16, 1000, 500)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db_url = f"sqlite:///{tempfile.mkdtemp(prefix='hilnas-scaling-')}/bench.db"
    load_before = os.getloadavg()[0]
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", resources={"hw:local-cpu": 1})
    cpu_bound_search(4, 50, 2, db_url)  # start and warm both workers, so neither run pays for that
    seconds = {workers: cpu_bound_search(trials, work_ms, workers, db_url) for workers in (1, 2)}
    ceiling = ceiling_trials / hilnas_driver(ceiling_trials, db_url)
    ray.shutdown()
    load_after = os.getloadavg()[0]

    console = Console()
    table = Table(title=f"CPU-bound search: {trials} trials x {work_ms:g} ms of CPU time each")
    for column in ("workers", "wall s", "trials / s", "speedup"):
        table.add_column(column, justify="right")
    for workers, elapsed in seconds.items():
        table.add_row(str(workers), f"{elapsed:.2f}", f"{trials / elapsed:.2f}", f"{seconds[1] / elapsed:.2f}x")
    console.print(table)
    speedup = seconds[1] / seconds[2]
    verdict = "met" if speedup >= 1.8 else "NOT met"
    console.print(f"speedup with 2 workers: {speedup:.2f}x (target >= 1.8x: {verdict})")
    console.print(
        f"load average (1 min) on this {os.cpu_count()}-core machine: {load_before:.1f} before, "
        f"{load_after:.1f} after; a load above the core count means other processes shared the CPUs "
        "and the speedup understates what idle cores give."
    )
    projection = Table(title=f"One driver's ceiling: {ceiling:.0f} no-op trials / s ({ceiling_trials} trials)")
    projection.add_column("trial duration", justify="right")
    projection.add_column("workers one driver keeps busy", justify="right")
    for duration in TRIAL_SECONDS:
        projection.add_row(f"{duration} s", f"{ceiling * duration:,.0f}")
    console.print(projection)


if __name__ == "__main__":
    main()
