"""How responsive the dashboard stays on a large search: query, front and figure times, and a full page run.

Writes one finished search of N trials (ZDT1 values, default 10,000) through the driver's recorder into
a temporary SQLite store, then times the dashboard's cached query layer cold and warm, the front on two
objectives, the Pareto figure, and a whole Pareto-explorer page run under Streamlit's AppTest.
Run: ``python -m benchmarks.dashboard_queries [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from search.families.benchmarks.problems import evaluate_problem
from search.pareto import hypervolume, pareto_mask
from search.recorder import SearchRecorder, TrialOutcome
from search.spec import parse_spec

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
REFERENCE = [1.1, 12.0]


def seed(db_url: str, n_trials: int) -> int:
    spec = parse_spec(
        {
            "name": "dashboard-benchmark",
            "family": "moo-benchmark",
            "options": {"problem": "zdt1", "n_var": 3},
            "objectives": [{"name": "f1", "reference": REFERENCE[0]}, {"name": "f2", "reference": REFERENCE[1]}],
            "budget": {"trials": n_trials},
        }
    )
    recorder = SearchRecorder.create_search(db_url, spec)
    decisions = np.random.default_rng(0).random((n_trials, 3))
    values = np.array([evaluate_problem("zdt1", x) for x in decisions])
    recorder.add_running([(i, {f"x{j}": float(v) for j, v in enumerate(x)}, None) for i, x in enumerate(decisions)])
    recorder.finish(
        [
            TrialOutcome(i, "complete", 1, values={"f1": a, "f2": b}, metrics={"f1": a, "f2": b, "work_ms": 1.0})
            for i, (a, b) in enumerate(values.tolist())
        ]
    )
    recorder.set_reference_point(REFERENCE)
    for n in range(n_trials // 50, n_trials + 1, n_trials // 50):
        front = {int(i) for i in np.flatnonzero(pareto_mask(values[:n]))}
        recorder.update_front(front, hypervolume(values[:n], REFERENCE), n)
    recorder.set_status("finished")
    return recorder.search_id


def timed(function, *args) -> tuple[float, object]:  # noqa: ANN001
    start = time.perf_counter()
    result = function(*args)
    return (time.perf_counter() - start) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 trials")
    args = parser.parse_args()
    n_trials = 1_000 if args.quick else args.trials

    with tempfile.TemporaryDirectory() as folder:
        db_url = f"sqlite:///{folder}/bench.db"
        os.environ["HILNAS_DB_URL"] = db_url
        from hilnas.settings import get_settings

        get_settings.cache_clear()
        seed_ms, search_id = timed(seed, db_url, n_trials)

        from streamlit.testing.v1 import AppTest

        from dashboard import data, figures

        rows: list[tuple[str, float]] = []
        cold, frame = timed(data.trials, db_url, search_id)
        warm, _ = timed(data.trials, db_url, search_id)
        rows += [("trials query, cold", cold), ("trials query, cached", warm)]
        rows.append(("searches list, cold", timed(data.searches, db_url)[0]))
        complete = frame.assign(search_id=search_id)
        mask_ms, mask = timed(figures.front_mask, complete, ["f1", "f2"], ["minimize", "minimize"])
        rows.append(("front on two objectives", mask_ms))
        rows.append(("Pareto figure", timed(figures.pareto_figure, [("bench", complete, mask)], ["f1", "f2"])[0]))
        app = AppTest.from_file(str(APP), default_timeout=120).run().switch_page("views/pareto.py")
        data.clear_caches()
        cold_page = timed(app.run)[0]
        warm_page = timed(app.run)[0]
        assert not app.exception, app.exception
        rows += [("Pareto page run, cold cache", cold_page), ("Pareto page run, warm cache", warm_page)]

    table = Table(title=f"Dashboard on a {n_trials:,}-trial search (SQLite; seeding took {seed_ms / 1000:.1f} s)")
    table.add_column("step")
    table.add_column("ms", justify="right")
    for step, ms in rows:
        table.add_row(step, f"{ms:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
