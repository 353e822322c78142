"""What every staged pipeline's commands share: the store and Ray options, running with a resume hint,
resuming, the list of runs and the stage table. Each family's CLI adds how its front is shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.table import Table

from hilnas.errors import Interrupted
from search.staged import StagedRun, list_runs

DbOption = Annotated[str | None, typer.Option("--db-url", help="result store (default: HILNAS_DB_URL)")]
AddressOption = Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: local)")]


class StagedPipeline(Protocol):
    run: StagedRun

    def execute(self) -> dict[str, dict[str, Any]]: ...


def store_url(db_url: str | None) -> str:
    from hilnas.settings import get_settings

    return db_url or get_settings().db_url


def execute(pipeline: StagedPipeline, resume_command: str) -> None:
    """Run the pipeline's unfinished stages; Ctrl-C ends with the command that continues the run."""
    try:
        pipeline.execute()
    except KeyboardInterrupt as exc:
        run_id = pipeline.run.run_id
        raise Interrupted(f"Run {run_id} was interrupted; continue it with `{resume_command} {run_id}`.") from exc


def resume(pipeline: StagedPipeline, resume_command: str, console: Console) -> None:
    """Continue a run unless it has already finished (then say so)."""
    if pipeline.run.status() == "finished":
        console.print(f"Run {pipeline.run.run_id} has already finished.")
        return
    execute(pipeline, resume_command)


def print_runs(db_url: str, kind: str, console: Console) -> None:
    table = Table("id", "name", "status", "created")
    for item in list_runs(db_url, kind):
        table.add_row(str(item["id"]), item["name"], item["status"], f"{item['created_at']:%Y-%m-%d %H:%M}")
    console.print(table)


def print_stages(run: StagedRun, console: Console) -> dict[str, dict[str, Any]]:
    """A table of the run's stages (status, seconds, short outputs or the error); returns every stage's output."""
    stages = run.stages()
    table = Table("stage", "status", "seconds", "output", title=f"run {run.run_id} ({run.status()})")
    for stage in stages:
        seconds = "" if stage["duration_s"] is None else f"{stage['duration_s']:.0f}"
        summary = stage["error"] or ", ".join(
            f"{k}={v}" for k, v in stage["output"].items() if isinstance(v, int | float | str) and len(str(v)) < 60
        )
        table.add_row(stage["name"], stage["status"], seconds, summary)
    console.print(table)
    return {s["name"]: s["output"] for s in stages}


def add_run_commands(
    app: typer.Typer,
    *,
    kind: str,
    family: str,
    resume_command: str,
    load: Callable[[int, str, Console, str | None], StagedPipeline],
    show_outputs: Callable[[dict[str, dict[str, Any]], Console], None],
    console: Console,
) -> None:
    """Register ``resume``, ``list`` and ``show`` on a family's pipeline app. ``load`` builds the pipeline
    of a stored run (imported lazily by the family); ``show_outputs`` prints what its stages produced."""

    @app.command("resume")
    def resume_run(run_id: int, db_url: DbOption = None, address: AddressOption = None) -> None:
        """Continue a run: finished stages are skipped, an interrupted search is resumed."""
        resume(load(run_id, store_url(db_url), console, address), resume_command, console)

    @app.command("list", help=f"Every {family} run with its status.")
    def list_runs_command(db_url: DbOption = None) -> None:
        print_runs(store_url(db_url), kind, console)

    @app.command("show")
    def show(run_id: int, db_url: DbOption = None) -> None:
        """The stages of a run, and its verified front and exported programs once they exist."""
        show_outputs(print_stages(StagedRun.load(store_url(db_url), run_id, kind), console), console)
