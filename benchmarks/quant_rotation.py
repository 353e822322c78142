"""Quantization rotation benchmark (SpinQuant): held-out perplexity per bit setting and rotation kind.

    python -m benchmarks.quant_rotation [--quick] [--gptq] [--model PATH | --train-tokens N]

Quantizes the hilnas backbone (``search/families/mobilellm_flash/backbone.py``: a small MobileLLM
with a BPE vocabulary, trained and cached on first use; ``--model`` names another checkpoint) with
fake quantization in PyTorch, calibrating on windows of its train tokens and scoring windows of
its validation tokens. For W4A4KV4, W4A8KV8 and W4A16 it prints held-out
perplexity with no rotation, random orthogonal and random Hadamard rotations (min/median/max over
seeds) and Cayley-learned rotations, the share of the no-rotation gap each closes, activation
outlier statistics at every linear input before/after rotation, the Cayley optimisation time, and
W4A4KV4's error budget (``quant_rotation.error_budget``: each part of the setting quantized alone,
without rotation, with random Hadamard seed 0 and with the learned rotation).
The learned rotation starts from random Hadamard seed 0 and takes ``Recipe``'s tuned Cayley SGD
defaults (see ``quant_rotation.cayley``). ``--quick``: 3 seeds, 8 held-out and 16 calibration
windows, 20 Cayley steps; default: 10 seeds, 128 held-out and 128 calibration windows, 100 steps.

The backbone is trained on ``QUANT_TRAIN_TOKENS`` (2.9 passes over its corpus; the first run trains it, about
8 min on two threads), not the pipeline's default 600K. Rotations remove outlying activations, and a model has
them only once trained long enough: on the default backbone W4A4KV4 costs 0.8% perplexity, within the spread of
random rotations; on this one 6.3%, with down_proj inputs at max/RMS 20-45. ``--quick`` keeps the default
backbone (what ``make demo`` already trained) unless ``--train-tokens`` is given.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

SETTINGS = ("W4A4KV4", "W4A8KV8", "W4A16")
BUDGET_SETTING = "W4A4KV4"
BUDGET_COLUMNS = {("random_hadamard", 0): "random Hadamard seed 0", ("learned", 0): "learned"}  # besides "none"
TARGET_GAP_CLOSED = 0.70
MIN_GAP = 0.005  # a no-rotation gap under 0.5% of FP perplexity is within seed noise: no share is printed
QUANT_TRAIN_TOKENS = 2_400_000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, small data, few Cayley steps")
    parser.add_argument("--gptq", action="store_true", help="GPTQ weights instead of round-to-nearest")
    parser.add_argument("--seq-len", type=int, default=128)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, help="checkpoint folder or file (default: the hilnas backbone)")
    source.add_argument(
        "--train-tokens",
        type=int,
        default=None,
        help=f"tokens the hilnas backbone is trained on (default {QUANT_TRAIN_TOKENS:,}; --quick: the pipeline's)",
    )
    args = parser.parse_args(argv)

    from search.families.mobilellm_flash.backbone import BackboneConfig
    from search.families.quant_rotation.pipeline import Recipe, evaluate
    from search.families.quant_rotation.qmodel import perplexity
    from search.families.quant_rotation.quantizers import QuantSpec
    from search.families.quant_rotation.target import load_target
    from search.families.quant_rotation.transform import Rotations

    torch.set_num_threads(1)
    console = Console(width=150)
    seeds = range(3 if args.quick else 10)
    steps = 20 if args.quick else Recipe.cayley_steps
    backbone = None
    if args.model is None:
        tokens = args.train_tokens
        if tokens is None:  # --quick trains nothing: it takes the backbone the pipeline (and make demo) already has
            tokens = BackboneConfig.model_fields["train_tokens"].default if args.quick else QUANT_TRAIN_TOKENS
        try:
            backbone = BackboneConfig(train_tokens=tokens)
        except ValidationError:
            parser.exit(2, f"--train-tokens must be a positive number of tokens, not {tokens}.\n")
    target = load_target(args.model, backbone)
    model = target.model
    heldout, calibration = target.windows(
        args.seq_len, heldout=8 if args.quick else 128, calibration=16 if args.quick else 128, seed=1
    )
    fp_ppl = perplexity(model, heldout)
    console.print(
        f"Model: {target.description}; "
        f"held-out {tuple(heldout.shape)}, calibration {tuple(calibration.shape)}; weights "
        f"{'GPTQ' if args.gptq else 'RTN'}; fake quantization in PyTorch. FP32 held-out ppl {fp_ppl:.3f}."
    )

    rows: dict[str, dict[str, list[float]]] = {}
    cayley: dict[str, tuple[float, tuple[float, float]]] = {}
    budget_rotations: dict[str, Rotations] = {"none": Rotations()}  # W4A4KV4's error budget, per column
    total = len(SETTINGS) * (2 + 2 * len(seeds))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("quantizing", total=total)
        for setting in SETTINGS:
            spec = QuantSpec.parse(setting)
            jobs = [
                ("none", 0),
                *((k, s) for s in seeds for k in ("random_orthogonal", "random_hadamard")),
                ("learned", 0),
            ]
            results: dict[str, list[float]] = {}
            for kind, seed in jobs:
                progress.update(task, description=f"{setting} {kind} seed {seed}")
                recipe = Recipe(spec=spec, rotation=kind, seed=seed, gptq=args.gptq, cayley_steps=steps)
                outcome = evaluate(model, recipe, heldout, calibration)
                results.setdefault(kind, []).append(outcome.ppl)
                if kind == "learned":
                    cayley[setting] = (outcome.cayley_s, outcome.calibration_loss)
                if setting == BUDGET_SETTING and (kind, seed) in BUDGET_COLUMNS:
                    budget_rotations[BUDGET_COLUMNS[kind, seed]] = outcome.rotations
                progress.advance(task)
            rows[setting] = results

    console.print(_quality_table(rows, fp_ppl, len(seeds)))
    console.print(_cayley_table(cayley, rows, steps, Recipe.cayley_lr))
    console.print(_outlier_table(model, calibration[:4]))
    console.print(_budget_table(model, budget_rotations, heldout, fp_ppl))
    console.print(_targets(rows, fp_ppl))


def _gap_closed(none: float, value: float, fp: float) -> float:
    """Share of the no-rotation gap a rotation closes; NaN when there is hardly a gap to close."""
    return (none - value) / (none - fp) if none - fp > MIN_GAP * fp else float("nan")


def _quality_table(rows: dict[str, dict[str, list[float]]], fp: float, n_seeds: int) -> Table:
    table = Table(
        "setting", "rotation", "ppl min", "ppl median", "ppl max", "gap closed (median)",
        title=f"Held-out perplexity (FP32 {fp:.3f}); random kinds over {n_seeds} seeds",
    )  # fmt: skip
    for setting, results in rows.items():
        none = results["none"][0]
        for kind, values in results.items():
            median = statistics.median(values)
            spread = (
                (f"{min(values):.3f}", f"{median:.3f}", f"{max(values):.3f}")
                if len(values) > 1
                else ("", f"{median:.3f}", "")
            )
            closed = _gap_closed(none, median, fp)
            gap = "" if kind == "none" else ("gap < 0.5%" if math.isnan(closed) else f"{closed:.0%}")
            table.add_row(setting, kind, *spread, gap)
    return table


def _cayley_table(
    cayley: dict[str, tuple[float, tuple[float, float]]],
    rows: dict[str, dict[str, list[float]]],
    steps: int,
    lr: float,
) -> Table:
    table = Table(
        "setting", "steps", "seconds", "calibration-set loss before -> after",
        "held-out ppl start -> learned",
        title=f"Cayley SGD (lr {lr}, linear decay, from random Hadamard seed 0)",
    )  # fmt: skip
    for setting, (seconds, (first, last)) in cayley.items():
        start, learned = rows[setting]["random_hadamard"][0], rows[setting]["learned"][0]
        table.add_row(
            setting, str(steps), f"{seconds:.1f}", f"{first:.3f} -> {last:.3f}", f"{start:.3f} -> {learned:.3f}"
        )
    return table


def _outlier_table(model, sequences: torch.Tensor) -> Table:  # noqa: ANN001 - a MobileLLM
    from search.families.quant_rotation.outliers import activation_stats
    from search.families.quant_rotation.pipeline import Recipe, quantize

    before = activation_stats(quantize(model, Recipe())[0], sequences)
    after = activation_stats(quantize(model, Recipe(rotation="random_hadamard"))[0], sequences)
    table = Table(
        "linear input", "max/RMS before", "max/RMS after", "kurtosis before", "kurtosis after",
        title="Activation outliers at linear inputs (FP model; after = random Hadamard R1-R4, seed 0)",
    )  # fmt: skip
    for name, stats in before.items():
        if name.endswith(("k_proj", "v_proj", "up_proj")):
            continue  # same input as q_proj / gate_proj
        rotated = after[name]
        table.add_row(
            name.replace(".q_proj", ".qkv_proj").replace(".gate_proj", ".gate_up_proj"),
            f"{stats['max_over_rms']:.1f}", f"{rotated['max_over_rms']:.1f}",
            f"{stats['kurtosis']:.1f}", f"{rotated['kurtosis']:.1f}",
        )  # fmt: skip
    return table


def _budget_table(model, rotations: dict, sequences: torch.Tensor, fp: float) -> Table:  # noqa: ANN001 - a MobileLLM
    """Each part of W4A4KV4 alone, without rotation, with random Hadamard seed 0 and with the learned rotation."""
    from search.families.quant_rotation.error_budget import budget_parts, error_budget
    from search.families.quant_rotation.quantizers import QuantSpec

    spec = QuantSpec.parse(BUDGET_SETTING)
    with Progress(transient=True) as progress:
        progress.add_task(f"{BUDGET_SETTING} error budget", total=None)
        budgets = {kind: error_budget(model, rotation, spec, sequences) for kind, rotation in rotations.items()}
    table = Table(
        "part quantized alone", *budgets,
        title=f"Where the {BUDGET_SETTING} error sits: held-out ppl over FP32 with one part quantized "
        "(weights RTN; parts interact, so they need not add up)",
    )  # fmt: skip
    for part in budget_parts(spec):
        table.add_row(part.name, *(f"{budget[part.name] - fp:+.3f}" for budget in budgets.values()))
    return table


def _targets(rows: dict[str, dict[str, list[float]]], fp: float) -> Table:
    table = Table("target", "measured", "met", title="Issue targets")
    results = rows["W4A4KV4"]
    none = results["none"][0]
    for kind in ("random_orthogonal", "random_hadamard", "learned"):
        closed = _gap_closed(none, statistics.median(results[kind]), fp)
        met = closed >= TARGET_GAP_CLOSED
        table.add_row(f"W4A4KV4 {kind} closes >= 70% of the no-rotation gap", f"{closed:.0%}", "yes" if met else "NO")
    hadamard, learned = statistics.median(results["random_hadamard"]), results["learned"][0]
    share = (hadamard - learned) / (hadamard - fp) if hadamard > fp else float("nan")
    table.add_row(
        "W4A4KV4 learned <= median random Hadamard (share of QuaRot's remaining gap closed)",
        f"{learned:.3f} vs {hadamard:.3f} ({share:.0%})",
        "yes" if learned <= hadamard else "NO",
    )
    return table


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    Console().print(f"benchmark wall time {time.perf_counter() - start:.0f} s")
