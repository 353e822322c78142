"""Sweep specs: which model sizes, token budget and data mixtures ``hilnas scaling sweep`` trains.

A spec is a YAML/TOML/JSON file or a built-in name (``quick``, ``mini``); pydantic validates it and
every problem is a one-sentence ``UserError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evaluators.corpus import CorpusConfig
from hilnas.errors import UserError
from search.registry import describe_validation_error
from search.scaling.teacher import TeacherSpec
from search.scaling.training import ModelSize, TrainSettings
from search.spec import read_mapping


class DatasetSpec(BaseModel):
    """One training text: natural corpus, teacher samples, a repeated natural subset, or a mixture."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["natural", "synthetic", "repeated", "mixture"]
    synthetic_fraction: float | None = Field(None, gt=0.0, lt=1.0, description="mixture: share of teacher text")
    unique_tokens: int | None = Field(None, ge=1024, description="repeated: size of the natural pool that repeats")

    @model_validator(mode="after")
    def _kind_fields(self) -> DatasetSpec:
        if (self.kind == "mixture") != (self.synthetic_fraction is not None):
            raise ValueError("synthetic_fraction is required for, and only for, a mixture")
        if (self.kind == "repeated") != (self.unique_tokens is not None):
            raise ValueError("unique_tokens is required for, and only for, a repeated dataset")
        return self


class SweepSpec(BaseModel):
    """The grid: every size x every dataset x every seed is one run with losses at ``checkpoints`` token counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=200)
    sizes: list[ModelSize] = Field(min_length=2)
    token_budget: int = Field(ge=4096, description="largest token count D of each run")
    checkpoints: int = Field(4, ge=1, le=20, description="token counts per run, log-spaced up to the budget")
    smallest_fraction: float = Field(0.125, gt=0.0, le=1.0, description="first checkpoint / budget")
    datasets: list[DatasetSpec] = Field(min_length=1)
    teacher: TeacherSpec = Field(default_factory=TeacherSpec)
    synthetic_tokens: int | None = Field(None, ge=1024, description="teacher text to sample (default: token_budget)")
    training: TrainSettings = Field(default_factory=TrainSettings)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="the natural text (default: all stdlib)")
    seeds: int = Field(1, ge=1, le=10)
    quality_windows: int = Field(64, ge=1, description="1 KiB windows sampled per dataset for its indicators")
    cpus_per_run: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _unique_names(self) -> SweepSpec:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError("dataset names must be unique")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError("model sizes must be distinct")
        return self

    def checkpoint_tokens(self) -> list[int]:
        counts = np.geomspace(self.token_budget * self.smallest_fraction, self.token_budget, self.checkpoints)
        return sorted({int(round(c)) for c in counts})


_DATASETS = [
    {"name": "natural", "kind": "natural"},
    {"name": "synthetic", "kind": "synthetic"},
    {"name": "mix-50", "kind": "mixture", "synthetic_fraction": 0.5},
    {"name": "repeated", "kind": "repeated", "unique_tokens": 16384},
]

BUILTIN_SPECS: dict[str, dict[str, Any]] = {
    # About a minute on 2 free cores once the corpus and teacher are cached.
    "quick": {
        "name": "quick",
        "sizes": [
            {"dim": 16, "layers": 1},
            {"dim": 32, "layers": 1},
            {"dim": 48, "layers": 1},
            {"dim": 64, "layers": 2},
        ],
        "token_budget": 65536,
        "checkpoints": 4,
        "smallest_fraction": 0.25,
        "datasets": _DATASETS,
        "teacher": {"tokens": 300_000},
        # Smaller batches give the short runs enough optimizer steps (128) for a warmup and cooldowns.
        "training": {"batch_size": 8, "warmup_steps": 10},
    },
    # About twenty minutes on 2 free cores.
    "mini": {
        "name": "mini",
        "sizes": [
            {"dim": 16, "layers": 1},
            {"dim": 32, "layers": 1},
            {"dim": 48, "layers": 2},
            {"dim": 64, "layers": 2},
            {"dim": 96, "layers": 3},
        ],
        "token_budget": 393216,
        "checkpoints": 6,
        "datasets": [*_DATASETS[:3], {"name": "repeated", "kind": "repeated", "unique_tokens": 49152}],
        "teacher": {"tokens": 1_000_000},
    },
}


def parse_sweep_spec(data: Any, origin: str = "sweep spec") -> SweepSpec:
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"The sweep spec {origin} is invalid: {describe_validation_error(exc)}.") from exc


def load_sweep_spec(source: str | Path) -> SweepSpec:
    """A spec from a file, or a built-in one by name."""
    path = Path(source)
    if not path.exists():
        if str(source) not in BUILTIN_SPECS:
            raise UserError(
                f"No sweep spec file {str(source)!r} and no built-in spec of that name "
                f"(built-ins: {', '.join(sorted(BUILTIN_SPECS))})."
            )
        return parse_sweep_spec(BUILTIN_SPECS[str(source)], origin=str(source))
    return parse_sweep_spec(read_mapping(path), origin=str(source))
