"""Search specs: a YAML/TOML/JSON file or a built-in name, validated by pydantic.

A spec names a family and may override its space and objectives; everything else has defaults
that run on one machine.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hilnas.errors import UserError
from search.family import Family
from search.registry import create_family, describe_validation_error
from search.space import SearchSpace

BUILTIN_DIR = Path(__file__).parent / "builtin_specs"


class ObjectiveSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    direction: Literal["minimize", "maximize"] = "minimize"
    #: Worst value counted in the hypervolume; defaults to the family's, else fixed from early trials.
    reference: float | None = None


class ConstraintSpec(BaseModel):
    """A bound on a reported metric, e.g. ``{metric: decode_ms, max: 20}``."""

    model_config = ConfigDict(extra="forbid")
    metric: str
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> ConstraintSpec:
        if self.max is None and self.min is None:
            raise ValueError(f"constraint on {self.metric!r} needs a max or a min")
        return self

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 is feasible, the size of a positive value is how far off."""
        over = value - self.max if self.max is not None else float("-inf")
        under = self.min - value if self.min is not None else float("-inf")
        return max(over, under)


class SamplerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["nsga2", "tpe", "gp", "random"] = "nsga2"
    seed: int | None = 0
    population_size: int = Field(50, ge=2)


class BudgetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trials: int = Field(100, ge=1, description="finished trials (complete or failed) to reach")
    batch_size: int = Field(8, ge=1, description="trials asked from the sampler at a time")
    max_concurrency: int = Field(4, ge=1, description="trials evaluated at once")
    trial_timeout_s: float | None = Field(600.0, gt=0)
    max_retries: int = Field(2, ge=0, description="re-runs of a trial that raised or whose worker died")
    cpus_per_trial: float = Field(1.0, gt=0)
    measure_alone: bool = Field(
        False,
        description="the device is this machine: measure only while no candidate trains (train a batch, then "
        "measure its trials one by one), so the numbers measure the candidate, not its neighbours",
    )


class SearchSpec(BaseModel):
    """A validated search description; ``resolve`` fills in the family's defaults."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    family: str
    options: dict[str, Any] = Field(default_factory=dict)
    objectives: list[ObjectiveSpec] | None = None
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    space: SearchSpace | None = None
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    device: str | None = None

    def build_family(self) -> Family:
        return create_family(self.family, self.options)

    def resolve(self) -> SearchSpec:
        """A copy with the family's default space and objectives filled in, all names checked."""
        family = self.build_family()
        space = self.space or family.default_space()
        objectives = self.objectives or [
            ObjectiveSpec(name=o.name, direction=o.direction, reference=o.reference)
            for o in family.default_objectives()
        ]
        known = {o.name for o in family.default_objectives()}
        for name in [o.name for o in objectives] + [c.metric for c in self.constraints]:
            if name not in known:
                raise UserError(
                    f"Family {self.family!r} reports no metric {name!r}; it reports: {', '.join(sorted(known))}."
                )
        if len({o.name for o in objectives}) != len(objectives):
            raise UserError("The spec names the same objective twice.")
        return self.model_copy(update={"space": space, "objectives": objectives})


def load_spec(source: str | Path) -> SearchSpec:
    """Read a spec from a file path or a built-in name; every problem is a one-sentence ``UserError``."""
    path = Path(source)
    if not path.exists():
        builtin = BUILTIN_DIR / f"{source}.yaml"
        if not builtin.exists():
            names = ", ".join(builtin_spec_names())
            raise UserError(f"No spec file {str(source)!r} and no built-in spec of that name (built-ins: {names}).")
        path = builtin
    data = read_mapping(path)
    return parse_spec(data, origin=str(source))


def parse_spec(data: Any, origin: str = "spec") -> SearchSpec:
    try:
        spec = SearchSpec.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"The spec {origin} is invalid: {describe_validation_error(exc)}.") from exc
    return spec.resolve()


def builtin_spec_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def find_named_file(target: str, builtin_dir: Path, what: str) -> Path:
    """``target`` when it is a file, else the built-in ``<builtin_dir>/<target>.yaml``; otherwise a ``UserError``
    that lists the built-in names (``what`` names the kind of file, e.g. "pipeline spec")."""
    path = Path(target)
    if path.is_file():
        return path
    builtin = builtin_dir / f"{target}.yaml"
    if not builtin.is_file():
        names = ", ".join(sorted(p.stem for p in builtin_dir.glob("*.yaml")))
        raise UserError(f"There is no {what} file {target!r} and no built-in one of that name (built-in: {names}).")
    return builtin


def read_mapping(path: Path) -> dict[str, Any]:
    """A YAML, TOML or JSON file as a mapping; unreadable or malformed files are a ``UserError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read the spec {path}: {exc.__class__.__name__}.") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UserError(f"The spec {path} is not well-formed: {first}.") from exc
    if not isinstance(data, dict):
        raise UserError(f"The spec {path} must be a mapping of fields such as name, family and budget.")
    return data
