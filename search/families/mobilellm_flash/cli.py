"""``hilnas flash ...``: the staged MobileLLM-Flash pipeline (backbone, calibrate, search, verify, export)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from search import staged_cli
from search.families.mobilellm_flash import FAMILY
from search.staged_cli import AddressOption, DbOption, store_url

app = typer.Typer(help="MobileLLM-Flash end to end: staged hardware-in-the-loop search.", no_args_is_help=True)
console = Console()

RESUME = "hilnas flash resume"


def run_pipeline(spec_target: str | None, db_url: str | None, address: str | None, out: Console) -> int:
    """Start a run from a spec file, a built-in name or the defaults; returns the run id."""
    from search.families.mobilellm_flash.pipeline import FlashPipeline
    from search.families.mobilellm_flash.pipeline_spec import load_pipeline_spec

    spec = load_pipeline_spec(spec_target)
    pipeline = FlashPipeline.start(spec, store_url(db_url), out, address)
    out.print(f"MobileLLM-Flash run [bold]{pipeline.run.run_id}[/] ({spec.name}) on hw:{pipeline.device}")
    staged_cli.execute(pipeline, RESUME)
    return pipeline.run.run_id


@app.command("run")
def run(
    spec: Annotated[str | None, typer.Argument(help="pipeline spec file or built-in name (default: defaults)")] = None,
    db_url: DbOption = None,
    address: AddressOption = None,
) -> None:
    """Run every stage of a new pipeline from SPEC."""
    run_pipeline(spec, db_url, address, console)


def _load(run_id: int, db_url: str, out: Console, address: str | None):  # noqa: ANN202 - a FlashPipeline
    from search.families.mobilellm_flash.pipeline import FlashPipeline

    return FlashPipeline.resume(run_id, db_url, out, address)


def _show_outputs(outputs: dict[str, dict], out: Console) -> None:
    for candidate in outputs.get("verify", {}).get("front", []):
        m, p = candidate["measured"], candidate["predicted"]
        out.print(
            f"trial {candidate['number']}: loss {candidate['loss']:.3f}, prefill {m['prefill']:.2f} ms "
            f"(predicted {p['prefill']:.2f}), decode {m['decode']:.3f} ms (predicted {p['decode']:.3f})"
        )
    for artifact in outputs.get("export", {}).get("artifacts", []):
        out.print(f"{artifact['path']}: {artifact['prompt']}[green]{artifact['generated']}[/]")


staged_cli.add_run_commands(
    app,
    kind=FAMILY,
    family="MobileLLM-Flash",
    resume_command=RESUME,
    load=_load,
    show_outputs=_show_outputs,
    console=console,
)
