"""Planners: after each round, read the state and propose the next round's actions, each with its reason.

``RulePlanner`` (the default) is deterministic and needs nothing but the state. ``LLMPlanner`` asks a model
through the LLM gateway with the actions as tools; every call it makes goes through the same checks as the
rule planner's (``limits.RoundCheck``), and refused calls are sent back to it with the reason. Neither planner
can spend beyond the goal's budgets: the orchestrator enforces them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from agents.llm import LLMGateway
from agents.orchestrator.actions import tool_schemas
from agents.orchestrator.decisions import Decision
from agents.orchestrator.limits import NO_CALL
from agents.orchestrator.state import NEARLY_FEASIBLE, State
from latency_models.fitting import MIN_ROWS_PER_PHASE

#: A round whose search raised the hypervolume by less than this share narrows the next search around the front.
MIN_HYPERVOLUME_GAIN = 0.02
#: Refused calls in one round after which the LLM planner gives the round up (the orchestrator falls back).
MAX_REJECTIONS = 3

# propose(planner, action, arguments, reason) -> the stored decision (accepted or refused with the reason)
Propose = Callable[[str, str, "str | dict[str, Any]", str], Decision]


class Planner(Protocol):
    name: str

    def plan(self, state: State, propose: Propose) -> None: ...


class RulePlanner:
    """The deterministic planner: calibrate, search and verify first; then stop, recalibrate, narrow, widen or add
    budget by fixed rules on the verified front, the predictor's error and the hypervolume per round."""

    name = "rule"

    def __init__(self, label: str = "rule") -> None:
        self.label = label

    def plan(self, state: State, propose: Propose) -> None:
        goal = state.goal
        measurements, trials = int(state.left("measurements")), int(state.left("trials"))
        per_round_trials, points = goal.search.trials, goal.verify.max_points

        def offer(action: str, reason: str, **arguments: Any) -> None:
            propose(self.label, action, {**arguments, "reason": reason}, reason)

        met = state.goal_met_by
        if met is not None:
            return self._finish(state, offer, f"goal met: {_meets(met, state)}")
        if not state.calibrated:
            budget = min(goal.calibration.budget, measurements)
            if budget < MIN_ROWS_PER_PHASE:
                return offer(
                    "stop",
                    f"budget spent: measurements ({measurements} left, a latency model needs {MIN_ROWS_PER_PHASE})",
                )
            offer(
                "calibrate",
                f"no latency model yet: measure {budget} architectures on the device "
                "(space-filling, then where the model is least sure) and fit it",
                measurements=budget,
            )
            search_trials = min(per_round_trials, trials)
            offer(
                "search",
                f"search the full pruned space with {search_trials} trials",
                trials=search_trials,
                space="full",
            )
            verify_points = min(points, measurements - budget)
            if verify_points >= 1:
                offer("verify", f"measure {verify_points} points of the predicted front", points=verify_points)
            return None
        spent = state.spent()
        if spent or state.left("rounds") <= 1:
            why = spent or [f"rounds (round {state.round} of {goal.budgets.rounds} is the last)"]
            return self._finish(state, offer, "budget spent: " + ", ".join(why) + _best_so_far(state))
        refit = (state.last_verification or {}).get("errors", {}).get("refit", {})
        if refit and measurements >= 2:
            more = min(max(MIN_ROWS_PER_PHASE, goal.calibration.budget // 2), measurements - 1)
            offer(
                "recalibrate",
                f"verification shows the latency model is off ({'; '.join(refit.values())}): measure {more} more "
                "architectures near the front and refit",
                measurements=more,
            )
            return offer(
                "verify", "re-verify the front the refitted model predicts", points=min(points, measurements - more)
            )
        search_trials = min(per_round_trials, trials)
        if not state.verified_front:
            nearest = state.nearest_to_feasible()
            if nearest and nearest[0][0] <= NEARLY_FEASIBLE:
                violation, candidate = nearest[0]
                offer(
                    "search",
                    f"no verified candidate meets the constraints, but trial {candidate['number']} of search "
                    f"{candidate['search_id']} is predicted within {violation:.0%} of them: widen the space around the "
                    f"{len(nearest)} nearest candidates and add {search_trials} trials",
                    trials=search_trials,
                    space="wide",
                )
            else:
                offer(
                    "search",
                    "no verified candidate meets the constraints and none is predicted within "
                    f"{NEARLY_FEASIBLE:.0%} of them: add {search_trials} trials over the full space",
                    trials=search_trials,
                    space="full",
                )
        else:
            gain = state.hypervolume_gain()
            best = min(state.verified_front, key=lambda c: c["loss"])
            missing = (
                f"the best verified loss {best['loss']:.3f} misses the target {goal.target.max:g}"
                if goal.target
                else "the target is not met"
            )
            if gain is not None and gain < MIN_HYPERVOLUME_GAIN:
                first, last = state.hypervolume[-2]["value"], state.hypervolume[-1]["value"]
                offer(
                    "search",
                    f"{missing} and the front improved little (hypervolume {first:.4g} -> {last:.4g}, "
                    f"{gain:+.1%}, below {MIN_HYPERVOLUME_GAIN:.0%}): narrow the space around the "
                    f"{len(state.verified_front)} verified front candidates with {search_trials} trials",
                    trials=search_trials,
                    space="narrow",
                )
            else:
                trend = "no earlier round to compare with" if gain is None else f"hypervolume {gain:+.1%} last round"
                offer(
                    "search",
                    f"{missing} and the front is still improving ({trend}): add {search_trials} trials over the "
                    "full space",
                    trials=search_trials,
                    space="full",
                )
        verify_points = min(points, measurements)
        offer("verify", f"measure {verify_points} points of the new predicted front", points=verify_points)
        return None

    def _finish(self, state: State, offer: Callable[..., None], reason: str) -> None:
        """Export the verified front's best candidates (unless already exported or out of time), then stop."""
        goal = state.goal
        if state.verified_front and not state.exported and goal.export.max_models and state.left("wall_time_s") > 0:
            models = min(goal.export.max_models, len(state.verified_front))
            offer("export", f"export the best {models} verified candidate(s) as ExecuTorch programs", models=models)
        offer("stop", reason)


def _meets(candidate: dict[str, Any], state: State) -> str:
    """``trial 3 of search 2: loss 5.41 <= 5.6, decode_ms 0.21 <= 20 (measured)``."""
    goal = state.goal
    parts = [f"loss {candidate['loss']:.3f}" + (f" <= {goal.target.max:g}" if goal.target else "")]
    for c in goal.constraints:
        value = candidate["loss"] if c.metric == "loss" else candidate["measured"][c.metric.removesuffix("_ms")]
        bound = f"<= {c.max:g}" if c.max is not None else f">= {c.min:g}"
        parts.append(f"{c.metric} {value:.4g} {bound}")
    return f"trial {candidate['number']} of search {candidate['search_id']}: " + ", ".join(parts) + " (measured)"


def _best_so_far(state: State) -> str:
    if not state.verified_front:
        return "; no verified candidate meets the constraints"
    best = min(state.verified_front, key=lambda c: c["loss"])
    target = f" (target {state.goal.target.max:g})" if state.goal.target else ""
    where = f"trial {best['number']} of search {best['search_id']}"
    return f"; best verified candidate: {where}, loss {best['loss']:.3f}{target}"


SYSTEM_PROMPT = """You plan an automated hardware-in-the-loop architecture search (MobileLLM-Flash: pruned \
children of a trained backbone, scored by held-out loss, latency predicted by a latency model fitted on device \
measurements). Each round you call one or more tools; the calls of one reply are the round's plan and run in \
order. Typical order: calibrate once, then search and verify; recalibrate when verification shows the latency \
model is off; narrow the search space around the front when it stops improving, widen it when nothing is \
feasible; export the best verified candidates and stop once the goal is met or spending more will not help. \
Budgets are enforced: a call asking for more than is left, an unknown tool or invalid arguments is refused and \
you are told why. Give every call a short reason with the figures that drove it. The judge reviews the run after \
you stop."""


class LLMPlanner:
    """Plans through an LLM with tool calling; refused calls are answered with the reason and counted, and after
    ``max_rejections`` refusals in a round it gives the round up (the orchestrator then falls back to the rule
    planner for that round)."""

    name = "llm"

    def __init__(self, gateway: LLMGateway, max_rejections: int = MAX_REJECTIONS) -> None:
        self.gateway, self.max_rejections = gateway, max_rejections

    def plan(self, state: State, propose: Propose) -> None:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _state_message(state)},
        ]
        tools = tool_schemas()
        rejections = 0
        while rejections < self.max_rejections:
            reply = self.gateway.complete(messages, tools=tools)
            if not reply.ok:
                propose(self.name, NO_CALL, {}, f"the LLM call failed: {reply.call.error}")
                return
            if not reply.tool_calls:
                propose(self.name, NO_CALL, {}, (reply.text or "").strip()[:500] or "(no text)")
                rejections += 1
                messages += [
                    {"role": "assistant", "content": reply.text or ""},
                    {"role": "user", "content": "Call one of the tools; a reply without a tool call plans nothing."},
                ]
                continue
            messages.append(
                {
                    "role": "assistant",
                    "content": reply.text,
                    "tool_calls": [
                        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                        for c in reply.tool_calls
                    ],
                }
            )
            accepted = False
            for call in reply.tool_calls:
                decision = propose(self.name, call.name, call.arguments, _stated_reason(call.arguments, reply.text))
                accepted |= decision.accepted
                rejections += not decision.accepted
                answer = "accepted" if decision.accepted else f"refused: {decision.rejection}"
                messages.append({"role": "tool", "tool_call_id": call.id, "content": answer})
            if accepted:
                return


def _state_message(state: State) -> str:
    recent = [
        {
            "round": d.round,
            "planner": d.planner,
            "action": d.action,
            "arguments": {k: v for k, v in d.arguments.items() if k != "reason"},
            "accepted": d.accepted,
            "reason": d.reason[:300],
            "refused_because": d.rejection,
        }
        for d in state.decisions[-12:]
    ]
    return (
        f"Round {state.round}. The run so far (JSON):\n{json.dumps(state.summary(), indent=1)}\n"
        f"Recent decisions:\n{json.dumps(recent, indent=1)}\nPlan this round with tool calls."
    )


def _stated_reason(arguments: str, text: str | None) -> str:
    """The reason the model gave in the call's ``reason`` argument, else in its message text."""
    try:
        reason = json.loads(arguments).get("reason")
    except (json.JSONDecodeError, AttributeError):
        reason = None
    return str(reason or text or "(no reason given)")[:2000]
