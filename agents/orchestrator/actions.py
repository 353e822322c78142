"""The stage functions a planner chooses from: each is a pydantic argument model (the LLM planner's tool schema)
and a function that runs one MobileLLM-Flash stage (``FlashWork``) with those arguments.

Narrowing or widening the space, adding search budget and spending more measurements are all arguments of
these few actions (``search(trials, space)``, ``calibrate``/``recalibrate(measurements)``, ``verify(points)``).
Budgets are not checked here: the orchestrator checks every call before it runs (``orchestrator.RoundCheck``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.orchestrator.goal import Goal
from agents.orchestrator.spaces import SpaceName, space_around
from agents.orchestrator.state import State
from search.families.mobilellm_flash import verification
from search.families.mobilellm_flash.pipeline import FlashWork, public
from search.families.mobilellm_flash.space import ArchConfig
from search.staged import StageContext


class ActionArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000, description="why this action now, with the figures that drove it")


class CalibrateArgs(ActionArgs):
    measurements: int = Field(ge=1, le=10_000, description="architectures to measure on the device")


class RecalibrateArgs(ActionArgs):
    measurements: int = Field(ge=1, le=10_000, description="more architectures to measure, near the current front")


class SearchArgs(ActionArgs):
    trials: int = Field(ge=1, le=100_000, description="candidates to evaluate (distilled, scored, latency predicted)")
    space: SpaceName = Field(
        "full", description="full: the whole pruned space; narrow / wide: a box around the current front"
    )


class VerifyArgs(ActionArgs):
    points: int = Field(ge=1, le=1000, description="predicted-front candidates to measure on the device")


class ExportArgs(ActionArgs):
    models: int = Field(ge=1, le=100, description="verified candidates to export as ExecuTorch programs")


class StopArgs(ActionArgs):
    reason: str = Field(min_length=1, max_length=2000, description="why the run ends here")


@dataclass
class Toolbox:
    """What an action runs with: the stage bodies, the goal, the run's state, and where in the plan it is."""

    work: FlashWork
    goal: Goal
    state: State
    run_id: int
    round: int


ActionFn = Callable[[Toolbox, Any, StageContext], dict[str, Any]]


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    arguments: type[ActionArgs]
    run: ActionFn | None  # None: the action ends the run instead of running a stage


def calibrate(box: Toolbox, args: CalibrateArgs, _context: StageContext) -> dict[str, Any]:
    return box.work.calibrate(box.state.backbone, args.measurements, box.goal.calibration.seed)


def recalibrate(box: Toolbox, args: RecalibrateArgs, _context: StageContext) -> dict[str, Any]:
    """More measurements drawn around the front (where the predictor must be right), then every predictor refitted
    on everything the device measured."""
    space = space_around(_backbone_arch(box), box.goal.workload, box.state.anchors(), "narrow")
    output = box.work.calibrate(box.state.backbone, args.measurements, box.goal.calibration.seed + box.round, space)
    return {**output, "space": "around the front" if space is not None else "full"}


def search(box: Toolbox, args: SearchArgs, context: StageContext) -> dict[str, Any]:
    space = space_around(_backbone_arch(box), box.goal.workload, box.state.anchors(), args.space)
    objectives = [o.model_dump(exclude_none=True) for o in box.goal.objectives] if box.goal.objectives else None
    output = box.work.search(
        box.state.backbone,
        context,
        f"{box.goal.name} (agent run {box.run_id}, round {box.round})",
        args.trials,
        seed=box.goal.search.seed + box.round,
        space=space,
        objectives=objectives,
    )
    return {**output, "space": args.space if space is not None else "full"}


def verify(box: Toolbox, args: VerifyArgs, _context: StageContext) -> dict[str, Any]:
    """Measure up to ``points`` unmeasured candidates spread along the predicted front of every search so far, as
    the current latency model predicts it, and compare prediction with measurement."""
    candidates = copy.deepcopy(box.state.candidates)
    backbone = box.state.backbone
    if candidates:
        box.work.repredict(candidates, backbone)
    measurer = box.work.measurer(backbone, "verify")
    chosen, fresh = box.work.measure_front(candidates, measurer, args.points, f"round {box.round} verify")
    plan = box.goal.verify
    errors = box.work.prediction_errors([c for c in chosen if c.get("measured")], plan.tolerance, plan.min_error_pct)
    front = verification.front(candidates, box.goal.constraints, measured_only=True)
    if front:
        box.work.print_front(front, backbone)
    return {
        "chosen": [[c["search_id"], c["number"]] for c in chosen],
        "device_measurements": fresh,
        "errors": errors,
        "measured": [public(c) for c in candidates if c.get("measured")],
        "not_verified": [[[c["search_id"], c["number"]], c["failed"]] for c in chosen if c.get("failed")],
        "front": [public(c) for c in front],
    }


def export(box: Toolbox, args: ExportArgs, _context: StageContext) -> dict[str, Any]:
    """The best verified candidates (those meeting the quality target first, then by loss) as ExecuTorch programs."""
    ranked = sorted(box.state.verified_front, key=lambda c: (not box.goal.meets_target(c["loss"]), c["loss"]))
    return box.work.export(box.state.backbone, ranked[: args.models], None)


def _backbone_arch(box: Toolbox) -> ArchConfig:
    return ArchConfig.model_validate(box.state.backbone["arch"])


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action(
            "calibrate",
            "Measure architectures of the whole pruned space on the device (space-filling, then where the model is "
            "least sure) and fit the latency model. Needed once before any search.",
            CalibrateArgs,
            calibrate,
        ),
        Action(
            "search",
            "Search pruned candidates of the backbone: each is distilled and scored by held-out loss, its latency "
            "predicted by the latency model. space narrows or widens the search around the current front.",
            SearchArgs,
            search,
        ),
        Action(
            "verify",
            "Measure candidates of the predicted Pareto front on the device; stores predicted against measured "
            "latency and tells how far off the latency model is.",
            VerifyArgs,
            verify,
        ),
        Action(
            "recalibrate",
            "Measure more architectures near the current front and refit the latency model on every measurement "
            "(when verification shows the model is off).",
            RecalibrateArgs,
            recalibrate,
        ),
        Action(
            "export",
            "Export the best verified candidates as ExecuTorch programs that generate text.",
            ExportArgs,
            export,
        ),
        Action("stop", "End the run (the goal is met, or spending more will not help).", StopArgs, None),
    )
}


def tool_schemas() -> list[dict[str, Any]]:
    """The actions as OpenAI-style function tools; the parameters are the argument models' JSON schemas."""
    return [
        {
            "type": "function",
            "function": {
                "name": action.name,
                "description": action.description,
                "parameters": action.arguments.model_json_schema(),
            },
        }
        for action in ACTIONS.values()
    ]
