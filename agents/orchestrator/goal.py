"""What a user asks the agent for: a goal file (YAML, TOML or JSON) or a built-in goal name.

A goal names the family, the objectives, the constraints the result must meet on the device
(e.g. ``{metric: decode_ms, max: 20}`` at ``workload: {decode_kv_len: 511}`` on ``device: local-cpu``),
an optional quality target (``target: {metric: loss, max: 5.6}``) and the budgets the agent may spend
(wall time, trials, device measurements, planning rounds). The family's settings (backbone, backend,
protocol, workload) and the per-round defaults (``calibration.budget`` measurements to fit the first
latency model, ``search.trials`` per search, ``verify.max_points`` per verification) are the sections of a
MobileLLM-Flash pipeline spec, so a goal reads like a pipeline spec with budgets on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hilnas.errors import UserError
from latency_models.protocol import ProtocolConfig
from search.families.mobilellm_flash.backbone import BackboneConfig
from search.families.mobilellm_flash.pipeline_spec import (
    ExportPlan,
    FlashPipelineSpec,
    SearchPlan,
    check_workload_fits,
)
from search.families.mobilellm_flash.space import Workload
from search.registry import available_families, describe_validation_error
from search.spec import ConstraintSpec, ObjectiveSpec, find_named_file, read_mapping
from search.staged_plans import CalibrationPlan, VerifyPlan

BUILTIN_DIR = Path(__file__).parent / "goals"
SUPPORTED_FAMILIES = ("mobilellm-flash",)
#: What a MobileLLM-Flash candidate reports (its search objectives); goals constrain and target these.
METRICS = ("loss", "prefill_ms", "decode_ms")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budgets(_Section):
    """What the agent may spend in all; the orchestrator enforces every one of them, whatever the planner asks."""

    wall_time_s: float = Field(3600.0, gt=0, description="seconds of stage work (time the process was dead is free)")
    trials: int = Field(60, gt=0, description="search trials over all rounds")
    measurements: int = Field(40, gt=0, description="architectures measured on the device over all stages")
    rounds: int = Field(4, gt=0, description="planning rounds after the backbone and the feasibility probe")


class Target(_Section):
    """A quality bound one verified candidate must reach, e.g. ``{metric: loss, max: 5.6}``."""

    metric: Literal["loss"] = "loss"
    max: float


class Goal(_Section):
    name: str = Field("goal", min_length=1, max_length=150)
    family: str = "mobilellm-flash"
    objectives: list[ObjectiveSpec] | None = Field(None, description="default: loss, prefill_ms and decode_ms")
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    target: Target | None = None
    budgets: Budgets = Field(default_factory=Budgets)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    device: str | None = Field(None, description="Ray resource hw:<device> (default: HILNAS_DEVICE)")
    backend: str = "executorch-xnnpack"
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    workload: Workload = Field(default_factory=lambda: Workload(prefill_len=128, decode_kv_len=256))
    calibration: CalibrationPlan = Field(default_factory=CalibrationPlan)
    search: SearchPlan = Field(default_factory=SearchPlan)
    verify: VerifyPlan = Field(default_factory=VerifyPlan)
    export: ExportPlan = Field(default_factory=ExportPlan)

    def pipeline_spec(self) -> FlashPipelineSpec:
        """The MobileLLM-Flash pipeline settings the stages run with."""
        fields = ("backbone", "device", "backend", "protocol", "workload", "constraints")
        fields += ("calibration", "search", "verify", "export")
        return FlashPipelineSpec(name=self.name, **{f: getattr(self, f) for f in fields})

    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives] if self.objectives else list(METRICS)

    def meets_target(self, loss: float) -> bool:
        return self.target is None or loss <= self.target.max

    def describe(self) -> str:
        """The goal in one line, e.g. ``decode_ms <= 20, loss <= 5.6 at prefill 128 / KV 511 on hw:local-cpu``."""
        bounds = [
            f"{c.metric} {'<=' if c.max is not None else '>='} {c.max if c.max is not None else c.min:g}"
            for c in self.constraints
        ]
        if self.target is not None:
            bounds.append(f"{self.target.metric} <= {self.target.max:g}")
        from hilnas.settings import get_settings

        device = self.device or get_settings().device
        where = f"prefill {self.workload.prefill_len} / KV {self.workload.decode_kv_len} on hw:{device}"
        return f"{', '.join(bounds) or 'the best front'} at {where}"


def load_goal(target: str) -> Goal:
    """A goal from a file or a built-in name; every problem is a one-sentence ``UserError``."""
    path = find_named_file(target, BUILTIN_DIR, "goal")
    return parse_goal(read_mapping(path), origin=str(target))


def parse_goal(data: dict, origin: str = "goal") -> Goal:
    """Validate a goal mapping: the family first (the rest of a goal is that family's), then every field."""
    family = data.get("family", "mobilellm-flash")
    if family not in SUPPORTED_FAMILIES:
        if family in available_families():
            raise UserError(
                f"The orchestrating agent does not support family {family!r} yet (supported: "
                f"{', '.join(SUPPORTED_FAMILIES)})."
            )
        raise UserError(f"Unknown family {family!r}; registered families are: {', '.join(available_families())}.")
    try:
        goal = Goal.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"The goal {origin} is invalid: {describe_validation_error(exc)}.") from exc
    check_workload_fits(goal.backbone, goal.workload, f"goal {origin}")
    named = [o.name for o in goal.objectives or []] + [c.metric for c in goal.constraints]
    unknown = sorted(set(named) - set(METRICS))
    if unknown:
        raise UserError(
            f"The goal {origin} names {', '.join(map(repr, unknown))}, but {family} candidates report only "
            f"{', '.join(METRICS)}."
        )
    return goal
