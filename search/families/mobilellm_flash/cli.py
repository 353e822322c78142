"""``hilnas flash ...``: the staged MobileLLM-Flash pipeline (backbone, calibrate, search, verify, export)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="MobileLLM-Flash end to end: staged hardware-in-the-loop search.", no_args_is_help=True)
console = Console()

DbOption = Annotated[str | None, typer.Option("--db-url", help="result store (default: HILNAS_DB_URL)")]
AddressOption = Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: local)")]


def _db(db_url: str | None) -> str:
    from hilnas.settings import get_settings

    return db_url or get_settings().db_url


def run_pipeline(spec_target: str | None, db_url: str | None, address: str | None, out: Console) -> int:
    """Start a run from a spec file, a built-in name or the defaults; returns the run id."""
    from search.families.mobilellm_flash.pipeline import FlashPipeline
    from search.families.mobilellm_flash.pipeline_spec import load_pipeline_spec

    spec = load_pipeline_spec(spec_target)
    pipeline = FlashPipeline.start(spec, _db(db_url), out, address)
    out.print(f"MobileLLM-Flash run [bold]{pipeline.run.run_id}[/] ({spec.name}) on hw:{pipeline.device}")
    _execute(pipeline)
    return pipeline.run.run_id


def _execute(pipeline) -> None:  # noqa: ANN001 - a FlashPipeline, imported lazily
    from hilnas.errors import Interrupted

    try:
        pipeline.execute()
    except KeyboardInterrupt as exc:
        raise Interrupted(
            f"Run {pipeline.run.run_id} was interrupted; continue it with `hilnas flash resume {pipeline.run.run_id}`."
        ) from exc


@app.command("run")
def run(
    spec: Annotated[str | None, typer.Argument(help="pipeline spec file or built-in name (default: defaults)")] = None,
    db_url: DbOption = None,
    address: AddressOption = None,
) -> None:
    """Run every stage of a new pipeline from SPEC."""
    run_pipeline(spec, db_url, address, console)


@app.command("resume")
def resume(run_id: int, db_url: DbOption = None, address: AddressOption = None) -> None:
    """Continue a run: finished stages are skipped, an interrupted search is resumed."""
    from search.families.mobilellm_flash.pipeline import FlashPipeline

    pipeline = FlashPipeline.resume(run_id, _db(db_url), console, address)
    if pipeline.run.status() == "finished":
        console.print(f"Run {run_id} has already finished.")
        return
    _execute(pipeline)


@app.command("list")
def list_(db_url: DbOption = None) -> None:
    """Every MobileLLM-Flash run with its status."""
    from search.families.mobilellm_flash.pipeline import KIND
    from search.staged import list_runs

    table = Table("id", "name", "status", "created")
    for run in list_runs(_db(db_url), KIND):
        table.add_row(str(run["id"]), run["name"], run["status"], f"{run['created_at']:%Y-%m-%d %H:%M}")
    console.print(table)


@app.command("show")
def show(run_id: int, db_url: DbOption = None) -> None:
    """The stages of a run, and its verified front and exported programs once they exist."""
    from search.families.mobilellm_flash.pipeline import KIND
    from search.staged import StagedRun

    run = StagedRun.load(_db(db_url), run_id, KIND)
    table = Table("stage", "status", "seconds", "output", title=f"run {run_id} ({run.status()})")
    for stage in run.stages():
        seconds = "" if stage["duration_s"] is None else f"{stage['duration_s']:.0f}"
        summary = stage["error"] or ", ".join(
            f"{k}={v}" for k, v in stage["output"].items() if isinstance(v, (int, float, str)) and len(str(v)) < 60
        )
        table.add_row(stage["name"], stage["status"], seconds, summary)
    console.print(table)
    outputs = {s["name"]: s["output"] for s in run.stages()}
    for candidate in outputs.get("verify", {}).get("front", []):
        m, p = candidate["measured"], candidate["predicted"]
        console.print(
            f"trial {candidate['number']}: loss {candidate['loss']:.3f}, prefill {m['prefill']:.2f} ms "
            f"(predicted {p['prefill']:.2f}), decode {m['decode']:.3f} ms (predicted {p['decode']:.3f})"
        )
    for artifact in outputs.get("export", {}).get("artifacts", []):
        console.print(f"{artifact['path']}: {artifact['prompt']}[green]{artifact['generated']}[/]")
