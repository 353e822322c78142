"""The ``quant-rotation`` family: a search over how to rotate and quantize one fixed model.

A candidate is a recipe (rotation kind and seed, which of R1-R4 are on, bit widths, clipping
ratios, GPTQ or RTN); its objectives are held-out perplexity of the fake-quantized model and the
model's storage size. The seed is a searched parameter, so the trials table holds the spread of
quality over random rotations (``seed_spread`` summarises it). No latency objective: fake
quantization runs no integer kernels, so timing it would measure nothing real.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pandas as pd
from pydantic import Field

from hilnas.errors import UserError
from search.families.quant_rotation.cayley import CAYLEY_LR
from search.families.quant_rotation.quantizers import FULL_PRECISION_BITS, QuantSpec
from search.families.quant_rotation.rotation import ROTATION_KINDS
from search.family import Evaluation, Family, FamilyOptions, InvalidCandidate, ObjectiveDefault, TrialContext
from search.space import CategoricalParam, FloatParam, IntParam, PerLayerParam, SearchSpace

BIT_PARAMS = ("w_bits", "a_bits", "kv_bits")


class QuantRotationOptions(FamilyOptions):
    model: str | None = Field(
        None, description="checkpoint folder or hilnas file to quantize; None: the (cached) hilnas backbone"
    )
    seq_len: int = Field(128, ge=2, le=4096)
    calibration_sequences: int = Field(128, ge=1)
    heldout_sequences: int = Field(32, ge=1)
    cayley_steps: int = Field(100, ge=1)
    cayley_lr: float = Field(CAYLEY_LR, gt=0)
    kv_group: int | None = Field(None, ge=1, description="KV features per quantization group; None: per head")


class QuantRotationFamily(Family):
    name = "quant-rotation"
    description = "SpinQuant-style rotations and W/A/KV fake quantization of one Llama-style model"
    Options = QuantRotationOptions

    options: QuantRotationOptions

    def default_space(self) -> SearchSpace:
        on_off = CategoricalParam(choices=[True, False])
        bits = CategoricalParam(choices=[4, 8, 16])
        return SearchSpace(
            params={
                "rotation": CategoricalParam(choices=list(ROTATION_KINDS)),
                "seed": IntParam(low=0, high=9),
                "r1": on_off,
                "r2": on_off,
                "r3": on_off,
                "r4": on_off,
                "w_bits": bits,
                "a_bits": bits,
                "kv_bits": bits,
                "a_clip": FloatParam(low=0.7, high=1.0, step=0.05),
                "kv_clip": FloatParam(low=0.7, high=1.0, step=0.05),
                "gptq": on_off,
                "w_clip_search": on_off,
            }
        )

    def default_objectives(self) -> list[ObjectiveDefault]:
        return [ObjectiveDefault("ppl", "minimize"), ObjectiveDefault("size_mb", "minimize")]

    def check_space(self, space: SearchSpace) -> None:
        """Bit widths a spec asks for must lie in 2-16; say so before any trial runs."""
        for name in BIT_PARAMS:
            param = space.params.get(name)
            if param is None or isinstance(param, PerLayerParam):
                continue
            values = param.choices if isinstance(param, CategoricalParam) else [param.low, param.high]
            bad = [v for v in values if not isinstance(v, (int, float)) or not 2 <= v <= 16]
            if bad:
                raise UserError(f"The spec's {name} allows {bad[0]!r}, outside the supported range 2-16.")

    def recipe(self, params: dict[str, Any]):  # noqa: ANN201 - pipeline imports torch, kept lazy
        from search.families.quant_rotation.pipeline import Recipe

        try:
            spec = QuantSpec(
                w_bits=int(params.get("w_bits", 16)),
                a_bits=int(params.get("a_bits", 16)),
                kv_bits=int(params.get("kv_bits", 16)),
                a_clip=float(params.get("a_clip", 1.0)),
                kv_clip=float(params.get("kv_clip", 1.0)),
                kv_group=self.options.kv_group,
                w_clip_search=bool(params.get("w_clip_search", False)),
            )
            return Recipe(
                spec=spec,
                rotation=str(params.get("rotation", "none")),
                seed=int(params.get("seed", 0)),
                r1=bool(params.get("r1", True)),
                r2=bool(params.get("r2", True)),
                r3=bool(params.get("r3", True)),
                r4=bool(params.get("r4", True)),
                gptq=bool(params.get("gptq", False)),
                cayley_steps=self.options.cayley_steps,
                cayley_lr=self.options.cayley_lr,
            )
        except UserError as exc:
            raise InvalidCandidate(exc.message) from exc

    def check_candidate(self, params: dict[str, Any]) -> None:
        self.recipe(params)

    def load_workload(self):  # noqa: ANN201 - (model, calibration, held-out), torch types kept lazy
        """The model and its windows, loaded once per process; the search command calls it before any trial, so
        the default backbone is trained once (not in every worker) and a bad model or data size stores nothing."""
        return _workload(self.options.model_dump_json())

    def evaluate(self, params: dict[str, Any], context: TrialContext) -> Evaluation:
        import torch

        from search.families.quant_rotation.pipeline import evaluate

        torch.set_num_threads(1)
        recipe = self.recipe(params)
        model, calibration, heldout = self.load_workload()
        outcome = evaluate(model, recipe, heldout, calibration)
        return Evaluation(
            metrics={"ppl": outcome.ppl, "size_mb": outcome.size_mb, "cayley_s": outcome.cayley_s},
            info={"setting": recipe.spec.label},
        )


@lru_cache(maxsize=2)
def _workload(options_json: str):  # noqa: ANN202 - (model, calibration, held-out), torch types kept lazy
    """Model and data, loaded once per process."""
    from search.families.quant_rotation.target import load_target

    options = QuantRotationOptions.model_validate_json(options_json)
    target = load_target(options.model)
    heldout, calibration = target.windows(options.seq_len, options.heldout_sequences, options.calibration_sequences)
    return target.model, calibration, heldout


def complete_recipes(trials: pd.DataFrame) -> pd.DataFrame:
    """The complete trials with ``rotation``, ``seed`` and ``setting`` (e.g. W4A4KV4) columns filled in.

    A spec whose space fixes a parameter leaves it out of the trials; the recipe then used its default.
    """
    done = trials[trials["state"] == "complete"].copy()
    bits = ((f"param.{b}", FULL_PRECISION_BITS) for b in BIT_PARAMS)
    defaults = (("param.rotation", "none"), ("param.seed", 0), *bits)
    for column, default in defaults:
        if column not in done:
            done[column] = default
    done["rotation"], done["seed"] = done["param.rotation"], done["param.seed"]
    done["setting"] = [
        QuantSpec(int(w), int(a), int(kv)).label
        for w, a, kv in zip(done["param.w_bits"], done["param.a_bits"], done["param.kv_bits"], strict=True)
    ]
    return done


def seed_spread(trials: pd.DataFrame) -> pd.DataFrame:
    """Held-out perplexity over seeds (count, min/median/max) for each recipe that differs only in its seed."""
    columns = ["rotation", "setting", "recipe", "seeds", "min", "median", "max"]
    done = complete_recipes(trials)
    if done.empty:
        return pd.DataFrame(columns=columns)
    shown = {"param.rotation", "param.seed", *(f"param.{b}" for b in BIT_PARAMS)}
    others = sorted(c for c in done.columns if c.startswith("param.") and c not in shown)
    done["recipe"] = [
        " ".join(f"{c.removeprefix('param.')}={row[c]}" for c in others if pd.notna(row[c]))
        for _, row in done.iterrows()
    ]
    grouped = done.groupby(["rotation", "setting", "recipe"])["value.ppl"]
    table = grouped.agg(seeds="count", min="min", median="median", max="max").reset_index()
    return table[columns]
