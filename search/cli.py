"""``hilnas search ...``: run, submit to a Ray cluster, resume, inspect and export searches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hilnas.errors import UserError

app = typer.Typer(help="Run, resume, inspect and export searches.", no_args_is_help=True)
console = Console()

DbOption = Annotated[str | None, typer.Option("--db-url", help="result store (default: HILNAS_DB_URL)")]
AddressOption = Annotated[
    str | None, typer.Option("--address", help="Ray cluster, e.g. head:6379 (default: HILNAS_RAY_ADDRESS, else local)")
]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")]
SpecArgument = Annotated[str, typer.Argument(help="spec file (YAML/TOML/JSON) or a built-in name")]
TrialsOption = Annotated[int | None, typer.Option(help="override the spec's trial budget")]
SeedOption = Annotated[int | None, typer.Option(help="override the sampler's seed")]


def _load(spec: str, trials: int | None, seed: int | None):  # noqa: ANN202 - SearchSpec, imported lazily
    from search.spec import load_spec

    loaded = load_spec(spec)
    if trials is not None:
        loaded = loaded.model_copy(update={"budget": loaded.budget.model_copy(update={"trials": trials})})
    if seed is not None:
        loaded = loaded.model_copy(update={"sampler": loaded.sampler.model_copy(update={"seed": seed})})
    return loaded


@app.command("run")
def run(
    spec: SpecArgument,
    db_url: DbOption = None,
    address: AddressOption = None,
    trials: TrialsOption = None,
    seed: SeedOption = None,
    progress: ProgressOption = True,
) -> None:
    """Start a new search from SPEC and run it to its trial budget."""
    from search.driver import SearchDriver

    loaded = _load(spec, trials, seed)
    driver = SearchDriver.start(loaded, db_url)
    console.print(f"Search [bold]{driver.search_id}[/] ({loaded.name}, family {loaded.family}) started.")
    _run_with_progress(driver, address, progress)
    show(driver.search_id, db_url=db_url)


@app.command("submit")
def submit(
    spec: SpecArgument,
    address: Annotated[
        str | None, typer.Option("--address", help="the cluster's Ray Jobs API, e.g. http://head:8265")
    ] = None,
    db_url: DbOption = None,
    trials: TrialsOption = None,
    seed: SeedOption = None,
    artifact_dir: Annotated[
        str | None, typer.Option(help="where the job writes artifacts, as a path on the cluster")
    ] = None,
) -> None:
    """Submit SPEC as a Ray job: the search's driver runs on the cluster, with this checkout's code."""
    from db.session import get_engine, redact_url
    from hilnas.settings import get_settings
    from search.submit import is_sqlite, submit_search

    settings = get_settings()
    address = address or settings.ray_jobs_address
    if not address:
        raise UserError("Give the cluster's Ray Jobs API with --address http://head:8265 (or HILNAS_RAY_JOBS_ADDRESS).")
    loaded = _load(spec, trials, seed)
    store = db_url or settings.db_url
    get_engine(store)  # an unreachable or unmigratable store is reported here, not in the job's log
    job_id = submit_search(loaded, address, store, artifact_dir)
    lines = [
        f"Submitted search {loaded.name!r} (family {loaded.family}) as Ray job [bold]{job_id}[/].",
        f"Follow its log:  ray job logs --address {address} --follow {job_id}",
        f"Its status:      ray job status --address {address} {job_id}",
        f"Its results:     hilnas search list --db-url {redact_url(store)}",
    ]
    if is_sqlite(store):
        lines.append("Note: a SQLite store only works when the cluster's head shares this machine's file system.")
    for line in lines:
        console.print(line, soft_wrap=True)  # whole lines, so the commands can be copied


@app.command("resume")
def resume(
    search_id: Annotated[int, typer.Argument(help="id of the search to continue")],
    db_url: DbOption = None,
    address: AddressOption = None,
    progress: ProgressOption = True,
) -> None:
    """Continue an interrupted or killed search without losing or repeating finished trials."""
    from search.driver import SearchDriver
    from search.queries import get_search

    if get_search(search_id, db_url).status == "finished":
        console.print(f"Search {search_id} has already finished.")
        return
    driver = SearchDriver.resume(search_id, db_url)
    _run_with_progress(driver, address, progress)
    show(search_id, db_url=db_url)


def _run_with_progress(driver, address: str | None, progress: bool) -> None:  # noqa: ANN001
    from search.progress import search_progress

    with search_progress(enabled=progress) as on_progress:
        result = driver.run(address=address, on_progress=on_progress)
    hv = "n/a" if result.hypervolume is None else f"{result.hypervolume:.4f}"
    console.print(
        f"Search {result.search_id} finished: {result.finished} trials, {result.failed} failed, hypervolume {hv}."
    )


@app.command("list")
def list_(db_url: DbOption = None) -> None:
    """All searches in the store with status, progress and best hypervolume."""
    from search.queries import list_searches

    table = Table("id", "name", "family", "status", "trials", "failed", "hypervolume", "created")
    for s in list_searches(db_url):
        hv = "" if s["hypervolume"] is None else f"{s['hypervolume']:.4f}"
        created = s["created_at"].strftime("%Y-%m-%d %H:%M") if s["created_at"] else ""
        table.add_row(
            str(s["id"]),
            s["name"],
            s["family"],
            s["status"],
            f"{s['finished']}/{s['target']}",
            str(s["failed"]),
            hv,
            created,
        )
    console.print(table)


@app.command("show")
def show(
    search_id: Annotated[int, typer.Argument(help="search id")],
    db_url: DbOption = None,
    limit: Annotated[int, typer.Option(help="front rows to print at most")] = 30,
) -> None:
    """A search's status and its Pareto front as a table."""
    import numpy as np

    from search.queries import get_search, trials_frame

    search = get_search(search_id, db_url)
    frame = trials_frame(search_id, db_url)
    finished = int(frame["state"].isin(["complete", "failed", "invalid"]).sum()) if len(frame) else 0
    failed = int(frame["state"].isin(["failed", "invalid"]).sum()) if len(frame) else 0
    hv = "n/a" if search.hypervolume is None else f"{search.hypervolume:.4f}"
    console.print(
        f"[bold]Search {search.id}[/] {search.name} · family {search.family} · {search.status} · "
        f"{finished}/{search.n_trials_target} trials ({failed} failed) · hypervolume {hv} "
        f"(reference {search.reference_point})"
    )
    if not len(frame):
        return
    objectives = [o["name"] for o in search.objectives]
    value_columns = [f"value.{o}" for o in objectives]
    front = frame[frame["is_pareto"]].sort_values(value_columns)
    copies = front.groupby(value_columns, sort=False)["number"].transform("size")
    front = front.assign(copies=copies).drop_duplicates(value_columns)
    if len(front) > limit:  # spread the rows over the whole front rather than its first corner
        front = front.iloc[np.linspace(0, len(front) - 1, limit).round().astype(int)]
    table = Table("trial", *objectives, "params", title=f"Pareto front ({len(front)} distinct points shown)")
    for _, row in front.iterrows():
        params = {k[6:]: row[k] for k in frame.columns if k.startswith("param.")}
        summary = ", ".join(f"{k}={_short(v)}" for k, v in list(params.items())[:6])
        if len(params) > 6:
            summary += f", … (+{len(params) - 6})"
        label = str(row["number"]) + (f" (+{row['copies'] - 1} same)" if row["copies"] > 1 else "")
        table.add_row(label, *[f"{row[c]:.4g}" for c in value_columns], summary)
    console.print(table)


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@app.command("export")
def export(
    search_id: Annotated[int, typer.Argument(help="search id")],
    format: Annotated[str, typer.Option("--format", help="csv, json or parquet")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write")] = None,
    db_url: DbOption = None,
) -> None:
    """Write every trial of a search to a CSV, JSON or Parquet file."""
    from search.queries import trials_frame

    if format not in ("csv", "json", "parquet"):
        raise UserError(f"Unknown export format {format!r}; choose csv, json or parquet.")
    frame = trials_frame(search_id, db_url)
    output = output or Path(f"search-{search_id}.{format}")
    if format == "csv":
        frame.to_csv(output, index=False)
    elif format == "json":
        frame.to_json(output, orient="records", indent=1)
    else:
        frame.to_parquet(output, index=False)
    console.print(f"Wrote {len(frame)} trials to {output}.")
