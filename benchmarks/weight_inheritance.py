"""Inherited vs random weights: the same pruned architectures after the same continued-pretraining budget.

Each architecture is a sub-architecture of the backbone at a different size, with a mix of full, local
(sliding-window) and skipped attention. It is trained twice with the identical recipe (logit distillation
from the backbone, same token budget, same data order): once starting from the backbone's most important
weights (``pruning.prune``), once from a random initialisation. The table gives the held-out loss of both
before and after that training. Inheritance pays off when the inherited column is clearly lower.

Run: ``python -m benchmarks.weight_inheritance [--quick] [--budget-tokens N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from search.families.mobilellm_flash.backbone import BackboneConfig, load_or_train_backbone, random_windows
from search.families.mobilellm_flash.distill import distill, heldout_loss
from search.families.mobilellm_flash.importance import compute_importance
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.pruning import prune
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig

#: (name, fraction of the backbone's width, query heads per KV head, KV heads, FFN fraction, attention per layer)
SHAPES = [
    ("large", 0.875, 3, 2, 0.875, "full local full local full full skip"),
    ("medium", 0.75, 2, 2, 0.75, "full local full skip local full"),
    ("small", 0.625, 2, 1, 0.5, "full local skip local full"),
    ("tiny", 0.5, 2, 1, 0.375, "local full skip local"),
]
WINDOW = 32


def architectures(backbone: ArchConfig, quick: bool) -> dict[str, ArchConfig]:
    """Sub-architectures of ``backbone`` (widths rounded to multiples of 8); --quick keeps three sizes."""
    smallest_ffn = min(layer.ffn_dim for layer in backbone.layers)
    chosen = {}
    for name, width, ratio, kv_heads, ffn, pattern in SHAPES[1:] if quick else SHAPES:
        modes = pattern.split()[: len(backbone.layers)]
        layer = {"n_heads": ratio * kv_heads, "n_kv_heads": kv_heads, "ffn_dim": _round8(smallest_ffn * ffn)}
        layers = [LayerConfig(attention=mode, **layer) for mode in modes]
        update = {"dim": _round8(backbone.dim * width), "layers": layers, "window": WINDOW, "block_repeat": 1}
        chosen[name] = backbone.model_copy(update=update)
    return chosen


def _round8(value: float) -> int:
    return max(8, round(value / 8) * 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three architectures and a small budget")
    parser.add_argument("--budget-tokens", type=int, default=None, help="continued-pretraining tokens per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budget = args.budget_tokens or (32 * 1024 if args.quick else 128 * 1024)
    console = Console(width=None if sys.stdout.isatty() else 140)  # a pipe would otherwise squeeze the table
    started = time.perf_counter()

    backbone = load_or_train_backbone(BackboneConfig())
    teacher = backbone.model
    calibration = random_windows(backbone.train_tokens, 32, 128, np.random.default_rng(args.seed))
    importance = compute_importance(teacher, calibration)
    teacher_loss = heldout_loss(teacher, backbone.val_tokens)
    console.print(
        f"backbone: {teacher.config.n_params():,} params, held-out loss {teacher_loss:.3f}; "
        f"importance from {importance.calibration_tokens:,} calibration tokens"
    )

    rows = []
    targets = architectures(teacher.config, args.quick)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, TextColumn("loss {task.fields[loss]}"), console=console) as progress:
        for name, target in targets.items():
            result = {}
            for start in ("inherited", "random"):
                if start == "inherited":
                    student = prune(teacher, importance, target)
                else:
                    torch.manual_seed(args.seed)
                    student = MobileLLM(target)
                before = heldout_loss(student, backbone.val_tokens)
                task = progress.add_task(f"{name}, {start}", total=None, loss="-")

                def report(step: int, steps: int, loss: float, task: int = task) -> None:
                    progress.update(task, completed=step, total=steps, loss=f"{loss:.3f}")

                stats = distill(student, teacher, backbone.train_tokens, budget, seed=args.seed, progress=report)
                result[start] = (before, heldout_loss(student, backbone.val_tokens), stats["seconds"])
            rows.append((name, target, result))

    table = Table(title=f"Inherited vs random initialisation after {budget:,} distillation tokens (held-out loss)")
    headers = ("arch", "params", "layers", "dim", "heads/kv", "attention", "inherited before", "inherited after")
    for column in (*headers, "random before", "random after", "gap", "s/model"):
        table.add_column(column, justify="left" if column in ("arch", "attention") else "right")
    for name, target, result in rows:
        (inh_before, inh_after, inh_s), (rnd_before, rnd_after, rnd_s) = result["inherited"], result["random"]
        layer = next(layer for layer in target.layers if layer.attention != "skip")
        table.add_row(
            name,
            f"{target.n_params() / 1e6:.2f}M",
            str(len(target.layers)),
            str(target.dim),
            f"{layer.n_heads}/{layer.n_kv_heads}",
            "".join(layer.attention[0].upper() for layer in target.layers),
            f"{inh_before:.3f}",
            f"{inh_after:.3f}",
            f"{rnd_before:.3f}",
            f"{rnd_after:.3f}",
            f"{rnd_after - inh_after:+.3f}",
            f"{(inh_s + rnd_s) / 2:.0f}",
        )
    console.print(table)
    wins = sum(r["inherited"][1] < r["random"][1] for _, _, r in rows)
    console.print(
        f"backbone loss {teacher_loss:.3f}; attention F full, L local (window {WINDOW}), S skipped; gap = random - "
        f"inherited after training. Inherited wins on {wins}/{len(rows)} architectures; "
        f"total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
