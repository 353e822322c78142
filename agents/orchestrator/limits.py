"""What the orchestrator refuses, whichever planner asks: budgets and the order stages need.

Every proposed action passes ``RoundCheck.check`` before it is stored as accepted. A call naming an unknown tool,
carrying malformed JSON or arguments its pydantic model rejects, asking for more than a budget has left, or
needing a stage that has not run, is refused with a one-line reason (stored in the decision log and, for the
LLM planner, sent back to the model). Accepted actions of a round count against the budgets at once, so a round
of several calls cannot overspend together what each could spend alone.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from agents.orchestrator.actions import ACTIONS, ActionArgs
from agents.orchestrator.state import State
from latency_models.fitting import MIN_ROWS_PER_PHASE
from search.registry import describe_validation_error

#: The action recorded for a planner reply that called no tool (or an LLM call that failed).
NO_CALL = "(no call)"


class RoundCheck:
    """Checks one round's proposals against the state the round was planned on and what it already accepted."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.trials_left = int(state.left("trials"))
        self.measurements_left = int(state.left("measurements"))
        self.calibrated = state.calibrated
        self.searched = bool(state.candidates)
        self.verifying = False
        self.stopped = False

    def check(self, name: str, raw: str | dict[str, Any]) -> tuple[ActionArgs | None, str | None]:
        """(validated arguments, None) for an acceptable call, else (None, why it is refused)."""
        if name == NO_CALL:
            return None, "no tool was called"
        if self.stopped:
            return None, "this round already stopped the run"
        action = ACTIONS.get(name)
        if action is None:
            return None, f"unknown tool {name!r} (the tools are {', '.join(ACTIONS)})"
        if isinstance(raw, str):
            try:
                raw = json.loads(raw or "{}")
            except json.JSONDecodeError as exc:
                return None, f"the arguments are not valid JSON ({exc.msg} at character {exc.pos})"
        if not isinstance(raw, dict):
            return None, "the arguments must be a JSON object"
        try:
            args = action.arguments.model_validate(raw)
        except ValidationError as exc:
            return None, f"invalid arguments: {describe_validation_error(exc)}"
        problem = self._problem(name, args)
        if problem is not None:
            return None, problem
        self._commit(name, args)
        return args, None

    def _problem(self, name: str, args: Any) -> str | None:
        state, goal = self.state, self.state.goal
        if name == "stop":
            return None
        if state.left("wall_time_s") <= 0:
            return (
                f"the wall-time budget is spent ({state.used['wall_time_s']:.0f} of {state.limit('wall_time_s'):g} s)"
            )
        if name in ("calibrate", "recalibrate", "verify"):
            asked = args.points if name == "verify" else args.measurements
            if asked > self.measurements_left:
                return (
                    f"asks for {asked} device measurements but {self.measurements_left} of the budget's "
                    f"{state.limit('measurements'):g} are left"
                )
        if name == "calibrate" and not self.calibrated and args.measurements < MIN_ROWS_PER_PHASE:
            return f"a latency model needs at least {MIN_ROWS_PER_PHASE} measured architectures"
        if name in ("recalibrate", "search") and not self.calibrated:
            return f"{name} needs a latency model: calibrate first"
        if name == "search":
            if args.trials > self.trials_left:
                return (
                    f"asks for {args.trials} trials but {self.trials_left} of the budget's "
                    f"{state.limit('trials'):g} are left"
                )
            if args.space != "full" and not self.searched:
                return f"there is no front to make a {args.space} space around yet: search the full space first"
        if name == "verify" and not self.searched:
            return "there is no searched candidate to verify yet"
        if name == "export":
            if args.models > goal.export.max_models:
                return f"asks for {args.models} models; the goal exports at most {goal.export.max_models}"
            if not state.verified_front and not self.verifying:
                return "no verified candidate meets the constraints yet"
        return None

    def _commit(self, name: str, args: Any) -> None:
        if name in ("calibrate", "recalibrate"):
            self.measurements_left -= args.measurements
            self.calibrated = True
        elif name == "verify":
            self.measurements_left -= args.points
            self.verifying = True
        elif name == "search":
            self.trials_left -= args.trials
            self.searched = True
        elif name == "stop":
            self.stopped = True
