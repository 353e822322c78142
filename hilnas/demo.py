"""``hilnas demo`` / ``make demo``: the main job on embedded defaults.

Until the MobileLLM-Flash family lands, the demo runs the search driver on ZDT1 (five variables,
Gaussian-process BO) and compares the hypervolume it reaches with the true front's.
"""

from __future__ import annotations

from rich.console import Console

from hilnas.settings import get_settings


def run_demo(db_url: str | None, console: Console) -> None:
    from search.cli import _run_with_progress, show
    from search.driver import SearchDriver
    from search.families.benchmarks.problems import true_hypervolume
    from search.spec import load_spec

    db_url = db_url or get_settings().db_url
    spec = load_spec("demo-zdt1")
    driver = SearchDriver.start(spec, db_url)
    console.print(f"[bold]hilnas demo[/]: {spec.sampler.name} on ZDT1 through the Ray driver, store {db_url}")
    _run_with_progress(driver, None, progress=True)
    show(driver.search_id, db_url=db_url, limit=10)
    from search.queries import get_search

    reached = get_search(driver.search_id, db_url).hypervolume or 0.0
    truth = true_hypervolume("zdt1")
    console.print(f"Hypervolume {reached:.4f} of the true front's {truth:.4f} ({reached / truth:.1%}).")
    console.print("Browse it with `hilnas search list`, `hilnas search show ID` or `optuna-dashboard " + db_url + "`.")
