"""``hilnas edgetam ...``: the staged EdgeTAM pipeline, and predicted masks for DAVIS test-dev."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from search import staged_cli
from search.families.edgetam import FAMILY
from search.staged_cli import AddressOption, DbOption, store_url

app = typer.Typer(
    help="EdgeTAM end to end: staged hardware-in-the-loop search for video segmenters.", no_args_is_help=True
)
console = Console()

RESUME = "hilnas edgetam resume"


@app.command("run")
def run(
    spec: Annotated[str | None, typer.Argument(help="pipeline spec file or built-in name (default: defaults)")] = None,
    db_url: DbOption = None,
    address: AddressOption = None,
) -> None:
    """Run every stage of a new pipeline from SPEC (built-in: edgetam-demo)."""
    from search.families.edgetam.pipeline import EdgeTAMPipeline
    from search.families.edgetam.pipeline_spec import load_edgetam_spec

    loaded = load_edgetam_spec(spec)
    pipeline = EdgeTAMPipeline.start(loaded, store_url(db_url), console, address)
    console.print(f"EdgeTAM run [bold]{pipeline.run.run_id}[/] ({loaded.name}) on hw:{pipeline.device}")
    staged_cli.execute(pipeline, RESUME)


def _load(run_id: int, db_url: str, out: Console, address: str | None):  # noqa: ANN202 - an EdgeTAMPipeline
    from search.families.edgetam.pipeline import EdgeTAMPipeline

    return EdgeTAMPipeline.resume(run_id, db_url, out, address)


def _show_outputs(outputs: dict[str, dict], out: Console) -> None:
    from search.families.edgetam.pipeline import FRAME

    for candidate in outputs.get("verify", {}).get("front", []):
        measured, predicted = candidate["measured"][FRAME], candidate["predicted"][FRAME]
        out.print(
            f"trial {candidate['number']}: J&F {100 * candidate['jf']:.1f}, frame {measured:.2f} ms "
            f"(predicted {predicted:.2f}), {candidate['params_count'] / 1e6:.3f}M parameters"
        )
    for artifact in outputs.get("export", {}).get("artifacts", []):
        out.print(f"trial {artifact['number']} {artifact['graph']}: {artifact['path']}")


staged_cli.add_run_commands(
    app,
    kind=FAMILY,
    family="EdgeTAM",
    resume_command=RESUME,
    load=_load,
    show_outputs=_show_outputs,
    console=console,
)


@app.command("predict")
def predict(
    run_id: int,
    davis_root: Annotated[Path, typer.Option("--davis-root", help="a DAVIS 2017 folder (test-dev needs no masks)")],
    out: Annotated[Path, typer.Option("--out", help="where <sequence>/<frame>.png palette masks are written")],
    split: Annotated[str, typer.Option("--split", help="ImageSets/2017/<split>.txt")] = "test-dev",
    resolution: Annotated[str, typer.Option("--resolution")] = "480p",
    trial: Annotated[
        int | None, typer.Option("--trial", help="a trial of the verified front (default: best J&F)")
    ] = None,
    db_url: DbOption = None,
) -> None:
    """Track every sequence of SPLIT from its first-frame masks with a verified model and write its masks."""
    from evaluators.vos.davis import DavisDataset
    from hilnas.errors import UserError
    from search.families.edgetam.family import load_checkpoint
    from search.families.edgetam.training import write_predictions
    from search.staged import StagedRun

    staged = StagedRun.load(store_url(db_url), run_id, FAMILY)
    verified = {s["name"]: s["output"] for s in staged.stages() if s["status"] == "done"}.get("verify", {})
    front = verified.get("front", [])
    if not front:
        raise UserError(f"Run {run_id} has no verified front yet; finish it with `hilnas edgetam resume {run_id}`.")
    chosen = front[0] if trial is None else next((c for c in front if c["number"] == trial), None)
    if chosen is None:
        numbers = ", ".join(str(c["number"]) for c in front)
        raise UserError(f"Trial {trial} is not on run {run_id}'s verified front (its trials: {numbers}).")
    videos = DavisDataset(davis_root, resolution).load_split(split)
    with console.status(f"tracking {len(videos)} sequences with trial {chosen['number']}"):
        folders = write_predictions(load_checkpoint(chosen["checkpoint"]), videos, out)
    frames = sum(len(list(folder.glob("*.png"))) for folder in folders)
    console.print(f"wrote {frames} palette masks of {len(folders)} sequences under {out} (trial {chosen['number']})")
