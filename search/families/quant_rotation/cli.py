"""``hilnas quant ...``: search rotation/quantization recipes, or evaluate one on a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hilnas.errors import UserError

app = typer.Typer(help="Quantization rotation search (SpinQuant-style, fake quantization).", no_args_is_help=True)
console = Console()
SPECS_DIR = Path(__file__).parent / "specs"


@app.command("search")
def search(
    spec: Annotated[str, typer.Argument(help="spec file, or a built-in quant spec name (e.g. quant-rotation-demo)")],
    db_url: Annotated[str | None, typer.Option("--db-url", help="result store (default: HILNAS_DB_URL)")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: local)")] = None,
    trials: Annotated[int | None, typer.Option(help="override the spec's trial budget")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Run a quant-rotation search through the search driver, then show quality spread over seeds."""
    from search.cli import show
    from search.driver import SearchDriver
    from search.families.quant_rotation.family import QuantRotationFamily, seed_spread
    from search.progress import search_progress
    from search.queries import trials_frame
    from search.spec import load_spec

    builtin = SPECS_DIR / f"{spec}.yaml"
    loaded = load_spec(builtin if not Path(spec).exists() and builtin.exists() else spec)
    family = loaded.build_family()
    if not isinstance(family, QuantRotationFamily):
        raise UserError(f"The spec searches family {loaded.family!r}; `hilnas quant search` needs 'quant-rotation'.")
    family.check_space(loaded.space)
    family.load_workload()
    if trials is not None:
        loaded = loaded.model_copy(update={"budget": loaded.budget.model_copy(update={"trials": trials})})
    driver = SearchDriver.start(loaded, db_url)
    console.print(f"Search [bold]{driver.search_id}[/] ({loaded.name}, family quant-rotation) started.")
    with search_progress(enabled=progress) as on_progress:
        driver.run(address=address, on_progress=on_progress)
    show(driver.search_id, db_url=db_url)
    spread = seed_spread(trials_frame(driver.search_id, db_url))
    table = Table(*spread.columns[:4], "ppl min", "ppl median", "ppl max", title="Quality spread over seeds")
    for row in spread.itertuples(index=False):
        table.add_row(
            row.rotation,
            row.setting,
            row.recipe,
            str(row.seeds),
            f"{row.min:.3f}",
            f"{row.median:.3f}",
            f"{row.max:.3f}",
        )
    console.print(table)


@app.command("eval")
def evaluate(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Hugging Face Llama-style checkpoint folder, hilnas backbone folder, or hilnas file saved with its "
            "tokenizer (default: the hilnas backbone, trained and cached on first use)",
        ),
    ] = None,
    rotation: Annotated[str, typer.Option(help="none, random_orthogonal, random_hadamard or learned")] = "none",
    bits: Annotated[str, typer.Option(help="bit setting such as W4A4KV4, W4A8KV8 or W4A16")] = "W4A4KV4",
    seed: Annotated[int, typer.Option(help="seed of the random (or starting) rotation")] = 0,
    gptq: Annotated[bool, typer.Option("--gptq/--rtn", help="GPTQ or round-to-nearest weights")] = False,
    a_clip: Annotated[float, typer.Option(help="activation clipping ratio")] = 1.0,
    kv_clip: Annotated[float, typer.Option(help="KV-cache clipping ratio")] = 1.0,
    w_clip_search: Annotated[
        bool,
        typer.Option(
            "--w-clip-search/--w-full-range",
            help="shrink each weight row's range to the least-squared-error ratio, or keep its max |w|",
        ),
    ] = False,
    seq_len: Annotated[int, typer.Option(help="predicted tokens per window")] = 128,
    calibration: Annotated[int, typer.Option(help="calibration windows (learned rotations, GPTQ)")] = 128,
    heldout: Annotated[int, typer.Option(help="held-out windows scored")] = 32,
    cayley_steps: Annotated[int, typer.Option(help="Cayley SGD steps for a learned rotation")] = 100,
) -> None:
    """Held-out perplexity of MODEL in full precision and quantized with one recipe."""
    from search.families.quant_rotation.pipeline import Recipe
    from search.families.quant_rotation.pipeline import evaluate as evaluate_recipe
    from search.families.quant_rotation.qmodel import perplexity
    from search.families.quant_rotation.quantizers import QuantSpec
    from search.families.quant_rotation.target import load_target

    recipe = Recipe(
        spec=QuantSpec.parse(bits, a_clip=a_clip, kv_clip=kv_clip, w_clip_search=w_clip_search),
        rotation=rotation,
        seed=seed,
        gptq=gptq,
        cayley_steps=cayley_steps,
    )
    target = load_target(model)
    network = target.model
    held, calib = target.windows(seq_len, heldout, calibration)
    fp_ppl = perplexity(network, held)
    outcome = evaluate_recipe(network, recipe, held, calib)
    table = Table("setting", "rotation", "weights", "held-out ppl", "size MB", "Cayley s")
    table.add_row("FP32", "-", "-", f"{fp_ppl:.3f}", "", "")
    table.add_row(
        recipe.spec.label,
        rotation,
        ("GPTQ" if gptq else "RTN") + ("+clip" if w_clip_search else ""),
        f"{outcome.ppl:.3f}",
        f"{outcome.size_mb:.3f}",
        f"{outcome.cayley_s:.1f}" if rotation == "learned" else "",
    )
    console.print(f"Model: {target.description}")
    console.print(table)
    console.print("(fake quantization in PyTorch: quality only, no integer kernels)")
