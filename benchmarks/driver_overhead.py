"""Per-trial overhead of the hilnas driver against plain Optuna and Ray Tune, plus ZDT1 quality.

The same no-op objective (two-variable ZDT1, microseconds of work) and the same NSGA-II sampler go
through (a) the hilnas driver with local Ray and a SQLite store, (b) ``optuna`` ``study.optimize``
with in-memory storage and (c) Ray Tune with ``OptunaSearch``. Run: ``python -m benchmarks.driver_overhead``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import optuna
import ray
from rich.console import Console
from rich.table import Table

from search.driver import SearchDriver
from search.families.benchmarks.problems import evaluate_problem, true_hypervolume
from search.spec import parse_spec

POPULATION = 50


def _spec(trials: int, problem: str = "zdt1", n_var: int = 2, sampler: str = "nsga2") -> dict:
    return {
        "name": f"overhead-{problem}",
        "family": "moo-benchmark",
        "options": {"problem": problem, "n_var": n_var},
        "sampler": {"name": sampler, "seed": 0, "population_size": POPULATION},
        "budget": {"trials": trials, "batch_size": 16, "max_concurrency": 8, "trial_timeout_s": 60},
    }


def hilnas_driver(trials: int, db_url: str) -> float:
    spec = parse_spec(_spec(trials))
    driver = SearchDriver.start(spec, db_url)
    start = time.perf_counter()
    driver.run()
    return time.perf_counter() - start


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(2)])
    f1, f2 = evaluate_problem("zdt1", x)
    return float(f1), float(f2)


def plain_optuna(trials: int) -> float:
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=optuna.samplers.NSGAIISampler(population_size=POPULATION, seed=0)
    )
    start = time.perf_counter()
    study.optimize(_objective, n_trials=trials)
    return time.perf_counter() - start


def ray_tune(trials: int) -> float:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config: dict) -> dict:
        f1, f2 = evaluate_problem("zdt1", np.array([config["x0"], config["x1"]]))
        return {"f1": float(f1), "f2": float(f2)}

    search = OptunaSearch(
        metric=["f1", "f2"],
        mode=["min", "min"],
        sampler=optuna.samplers.NSGAIISampler(population_size=POPULATION, seed=0),
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"x0": tune.uniform(0, 1), "x1": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, max_concurrent_trials=8),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="tune-"), verbose=0),
    )
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


def zdt1_quality(trials: int, db_url: str) -> list[tuple[str, float]]:
    """Hypervolume ratio against the true front after ``trials`` trials, per sampler and dimension."""
    rows = []
    for n_var, sampler in ((30, "nsga2"), (30, "tpe"), (5, "tpe"), (5, "gp")):
        spec = parse_spec(_spec(trials, "zdt1", n_var, sampler) | {"name": f"zdt1-{n_var}-{sampler}"})
        result = SearchDriver.start(spec, db_url).run()
        rows.append((f"ZDT1 n_var={n_var}, {sampler}", (result.hypervolume or 0.0) / true_hypervolume("zdt1")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument(
        "--quality-trials", type=int, default=200, help="trials per ZDT1 quality run; 0 skips them (minutes with GP)"
    )
    parser.add_argument(
        "--tune-trials",
        type=int,
        default=None,
        help="trials for Ray Tune (default: --trials; its per-trial cost is flat)",
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    workdir = tempfile.mkdtemp(prefix="hilnas-bench-")
    db_url = f"sqlite:///{workdir}/bench.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", resources={"hw:local-cpu": 1})
    hilnas_driver(20, db_url)  # warm Ray's worker pool so (a) pays no start-up cost
    tune_trials = args.tune_trials or args.trials
    console = Console()
    legs = {
        "(a) hilnas driver, local Ray + SQLite": (args.trials, lambda: hilnas_driver(args.trials, db_url)),
        "(b) optuna study.optimize, in-memory": (args.trials, lambda: plain_optuna(args.trials)),
        "(c) Ray Tune + OptunaSearch": (tune_trials, lambda: ray_tune(tune_trials)),
    }
    timings: dict[str, tuple[int, float]] = {}
    for name, (trials, leg) in legs.items():
        timings[name] = (trials, leg())
        console.print(f"{name}: {trials} trials in {timings[name][1]:.2f} s")
    quality = zdt1_quality(args.quality_trials, db_url) if args.quality_trials else []
    ray.shutdown()

    table = Table(title=f"Driver overhead, no-op trials, NSGA-II (population {POPULATION})")
    table.add_column("setup")
    table.add_column("trials", justify="right")
    table.add_column("total s", justify="right")
    table.add_column("ms / trial", justify="right")
    per_trial = {}
    for name, (trials, seconds) in timings.items():
        per_trial[name] = seconds / trials
        table.add_row(name, str(trials), f"{seconds:.2f}", f"{1000 * per_trial[name]:.2f}")
    console.print(table)
    a, b, c = per_trial.values()
    console.print(f"a/b = {a / b:.1f}x   a/c = {a / c:.2g}x   target: (a) < 10 ms/trial and a/c < 1")
    if not quality:
        return
    quality_table = Table(title=f"Hypervolume ratio vs the true front after {args.quality_trials} trials")
    quality_table.add_column("problem, sampler")
    quality_table.add_column("HV ratio", justify="right")
    for name, ratio in quality:
        quality_table.add_row(name, f"{ratio:.3f}")
    console.print(quality_table)
    console.print("target: >= 0.95 on ZDT1")


if __name__ == "__main__":
    main()
