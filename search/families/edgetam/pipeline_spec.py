"""What an EdgeTAM pipeline run is asked to do: a YAML/TOML/JSON file or a built-in name.

Every field has a default that runs on one 2-core machine; the built-in ``edgetam-demo`` is the
embedded default (synthetic videos, the local CPU through ExecuTorch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from hilnas.errors import UserError
from latency_models.protocol import ProtocolConfig
from search import staged_plans
from search.families.edgetam.family import EdgeTAMRecipe
from search.families.edgetam.latency import COMPONENTS
from search.registry import describe_validation_error
from search.space import SearchSpace
from search.spec import ConstraintSpec, find_named_file, read_mapping
from search.staged_plans import PlanSection, VerifyPlan

BUILTIN_DIR = Path(__file__).parent / "specs"


class CalibrationPlan(staged_plans.CalibrationPlan):
    """Fewer, costlier architectures than the LLM family (every component is measured), per-component fits."""

    budget: int = Field(12, ge=4, description="architectures measured on the device (each: every component)")
    pool: int = Field(60, ge=8, description="random valid candidates the design chooses from")
    components: bool = Field(True, description="also fit a predictor per component, not only per frame")


class SearchPlan(staged_plans.SearchPlan):
    trials: int = Field(16, ge=1)
    population_size: int = Field(8, ge=2)


class ExportPlan(PlanSection):
    max_models: int = Field(2, ge=0, description="verified-front candidates exported, best J&F first")
    graphs: list[Literal[COMPONENTS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(COMPONENTS), description="which per-frame graphs become ExecuTorch programs"
    )


class EdgeTAMPipelineSpec(PlanSection):
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
