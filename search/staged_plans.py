"""The stage sections every staged pipeline spec shares (calibrate, search, verify), with defaults sized for
one 2-core machine. A family subclasses a section to change its defaults or add what only it needs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PlanSection(BaseModel):
    """A spec section: unknown keys are typos, so they are refused."""

    model_config = ConfigDict(extra="forbid")


class CalibrationPlan(PlanSection):
    budget: int = Field(10, ge=4, description="architectures measured on the device")
    initial: int | None = Field(None, ge=2, description="space-filling design size (default: 2/3 of the budget)")
    pool: int = Field(300, ge=8, description="random candidates the design chooses from")
    seed: int = 0


class SearchPlan(PlanSection):
    trials: int = Field(24, ge=1)
    sampler: Literal["nsga2", "tpe", "gp", "random"] = "nsga2"
    population_size: int = Field(12, ge=2)
    seed: int = 0
    batch_size: int = Field(4, ge=1)
    max_concurrency: int = Field(2, ge=1)
    trial_timeout_s: float = Field(1800.0, gt=0)


class VerifyPlan(PlanSection):
    max_points: int = Field(6, ge=1, description="predicted-front candidates measured per round")
    max_rounds: int = Field(2, ge=1, description="refit-and-re-verify rounds at most")
    stop_when_accurate: bool = Field(
        True,
        description="stop once the predictor is within its stated accuracy on the front; false spends every round "
        "on more of the front (refitting only when the error calls for it)",
    )
    tolerance: float = Field(
        1.5, gt=0, description="refit when the mean error exceeds this multiple of the predictor's stated MAPE"
    )
    min_error_pct: float = Field(3.0, ge=0, description="errors below this are within measurement noise")
