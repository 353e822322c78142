"""What a MobileLLM-Flash pipeline run is asked to do: a YAML/TOML/JSON file or a built-in name.

Every field has a default that runs on one 2-core machine; the built-in ``flash-demo`` is what
``make demo`` runs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError

from hilnas.errors import UserError
from latency_models.protocol import ProtocolConfig
from search import staged_plans
from search.families.mobilellm_flash.backbone import BackboneConfig
from search.families.mobilellm_flash.space import Workload
from search.registry import describe_validation_error
from search.spec import ConstraintSpec, find_named_file, read_mapping
from search.staged_plans import CalibrationPlan, PlanSection, VerifyPlan

BUILTIN_DIR = Path(__file__).parent / "specs"


class SearchPlan(staged_plans.SearchPlan):
    """The shared search budget plus each candidate's continued pretraining."""

    distill_tokens: int = Field(32_768, ge=0, description="continued-pretraining tokens per candidate")
    distill_batch: int = Field(8, ge=1)
    threads: int = Field(1, ge=1, description="torch threads per candidate")


class ExportPlan(PlanSection):
    max_models: int = Field(3, ge=0)
    prompt: str = "Return the number of items in the"
    new_tokens: int = Field(24, ge=1)


class FlashPipelineSpec(PlanSection):
    """Backbone, device, the shapes latency is judged at, constraints, and each stage's budget."""

    name: str = Field("mobilellm-flash", min_length=1, max_length=200)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    device: str | None = Field(None, description="Ray resource hw:<device> (default: HILNAS_DEVICE)")
    backend: str = "executorch-xnnpack"
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    workload: Workload = Field(default_factory=lambda: Workload(prefill_len=128, decode_kv_len=256))
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    multiple_choice: str | None = Field(None, description="local JSONL multiple-choice set for zero-shot accuracy")
    calibration: CalibrationPlan = Field(default_factory=CalibrationPlan)
    search: SearchPlan = Field(default_factory=SearchPlan)
    verify: VerifyPlan = Field(default_factory=VerifyPlan)
    export: ExportPlan = Field(default_factory=ExportPlan)


def check_workload_fits(backbone: BackboneConfig, workload: Workload, origin: str) -> None:
    """A backbone hilnas trains must cover the workload's positions; refuse before anything is trained (a
    checkpoint's context is only known once it is read, and the pipeline checks it then)."""
    if backbone.checkpoint is None and workload.context > backbone.max_context:
        raise UserError(
            f"The {origin} needs {workload.context} positions (prefill {workload.prefill_len}, KV "
            f"{workload.decode_kv_len} plus the new token) but its backbone covers {backbone.max_context}; "
            f"lower the workload or raise backbone.max_context."
        )


def load_pipeline_spec(target: str | None) -> FlashPipelineSpec:
    """A spec from a file, a built-in name, or the defaults when ``target`` is None."""
    if target is None:
        return FlashPipelineSpec()
    path = find_named_file(target, BUILTIN_DIR, "pipeline spec")
    data = read_mapping(path)
    try:
        spec = FlashPipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"The pipeline spec {target} is invalid: {describe_validation_error(exc)}.") from exc
    check_workload_fits(spec.backbone, spec.workload, f"pipeline spec {target}")
    return spec
