"""What an EdgeTAM pipeline run is asked to do: a YAML/TOML/JSON file or a built-in name.

Every field has a default that runs on one 2-core machine; the built-in ``edgetam-demo`` is the
embedded default (synthetic videos, the local CPU through ExecuTorch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hilnas.errors import UserError
from latency_models.protocol import ProtocolConfig
from search.families.edgetam.family import EdgeTAMRecipe
from search.families.edgetam.latency import COMPONENTS
from search.families.mobilellm_flash.pipeline_spec import VerifyPlan
from search.registry import describe_validation_error
from search.space import SearchSpace
from search.spec import ConstraintSpec, find_named_file, read_mapping

BUILTIN_DIR = Path(__file__).parent / "specs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CalibrationPlan(_Section):
    budget: int = Field(12, ge=4, description="architectures measured on the device (each: every component)")
    initial: int | None = Field(None, ge=2, description="space-filling design size (default: 2/3 of the budget)")
    pool: int = Field(60, ge=8, description="random valid candidates the design chooses from")
    components: bool = Field(True, description="also fit a predictor per component, not only per frame")
    seed: int = 0


class SearchPlan(_Section):
    trials: int = Field(16, ge=1)
    sampler: Literal["nsga2", "tpe", "gp", "random"] = "nsga2"
    population_size: int = Field(8, ge=2)
    seed: int = 0
    batch_size: int = Field(4, ge=1)
    max_concurrency: int = Field(2, ge=1)
    trial_timeout_s: float = Field(1800.0, gt=0)


class ExportPlan(_Section):
    max_models: int = Field(2, ge=0, description="verified-front candidates exported, best J&F first")
    graphs: list[Literal[COMPONENTS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(COMPONENTS), description="which per-frame graphs become ExecuTorch programs"
    )


class EdgeTAMPipelineSpec(_Section):
    """The recipe (data, widths, budgets), device, space, constraints and each stage's budget."""

    name: str = Field("edgetam", min_length=1, max_length=200)
    recipe: EdgeTAMRecipe = Field(default_factory=EdgeTAMRecipe)
    device: str | None = Field(None, description="Ray resource hw:<device> (default: HILNAS_DEVICE)")
    backend: str = "executorch-xnnpack"
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    space: SearchSpace | None = Field(None, description="the searched (and calibrated) space; default the family's")
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    calibration: CalibrationPlan = Field(default_factory=CalibrationPlan)
    search: SearchPlan = Field(default_factory=SearchPlan)
    verify: VerifyPlan = Field(default_factory=VerifyPlan)
    export: ExportPlan = Field(default_factory=ExportPlan)


def load_edgetam_spec(target: str | None) -> EdgeTAMPipelineSpec:
    """A spec from a file, a built-in name, or the defaults when ``target`` is None."""
    if target is None:
        return EdgeTAMPipelineSpec()
    path = find_named_file(target, BUILTIN_DIR, "EdgeTAM pipeline spec")
    try:
        return EdgeTAMPipelineSpec.model_validate(read_mapping(path))
    except ValidationError as exc:
        raise UserError(f"The EdgeTAM pipeline spec {target} is invalid: {describe_validation_error(exc)}.") from exc
