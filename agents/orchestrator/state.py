"""What a planner decides on: the run so far, read back from the store after every stage.

Everything here is recomputed from the stage rows, the decision log and the run's searches, so a resumed
run's planner sees exactly what an uninterrupted one would have seen. ``State.summary()`` is the JSON a
decision row stores and the LLM planner reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from agents.orchestrator.decisions import Decision
from agents.orchestrator.goal import Goal
from db.models import Search
from db.session import session_scope
from search.families.mobilellm_flash import verification
from search.families.mobilellm_flash.pipeline import finished_candidates
from search.pareto import hypervolume, pareto_mask
from search.verification import feasible

#: A predicted candidate within this share of a constraint's bound counts as nearly feasible.
NEARLY_FEASIBLE = 0.25


@dataclass
class State:
    goal: Goal
    round: int  # the round being planned (1 after the preamble)
    used: dict[str, float]
    outputs: dict[str, dict[str, Any]]  # done stages' outputs by stage name
    decisions: list[Decision]
    searches: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    verified_front: list[dict[str, Any]] = field(default_factory=list)
    hypervolume: list[dict[str, Any]] = field(default_factory=list)
    impossible: str | None = None
    stopped: str | None = None

    # ------------------------------------------------------------------ budgets

    def limit(self, budget: str) -> float:
        return float(getattr(self.goal.budgets, budget))

    def left(self, budget: str) -> float:
        return max(0.0, self.limit(budget) - self.used[budget])

    def spent(self) -> list[str]:
        """The budgets with nothing left, as ``trials (40 of 40 used)``."""
        return [
            f"{name} ({self.used[name]:g} of {self.limit(name):g} used)"
            for name in ("wall_time_s", "trials", "measurements", "rounds")
            if self.left(name) <= 0
        ]

    # ------------------------------------------------------------------ what has been done

    def stage_outputs(self, action: str) -> list[dict[str, Any]]:
        """Outputs of the done stages of accepted ``action`` decisions, oldest first."""
        return [
            self.outputs[d.stage]
            for d in self.decisions
            if d.accepted and d.action == action and d.stage in self.outputs
        ]

    @property
    def calibrated(self) -> bool:
        return bool(self.stage_outputs("calibrate") or self.stage_outputs("recalibrate"))

    @property
    def backbone(self) -> dict[str, Any] | None:
        return self.outputs.get("backbone")

    @property
    def exported(self) -> int:
        return sum(len(o.get("artifacts", [])) for o in self.stage_outputs("export"))

    @property
    def last_verification(self) -> dict[str, Any] | None:
        verified = self.stage_outputs("verify")
        return verified[-1] if verified else None

    @property
    def goal_met_by(self) -> dict[str, Any] | None:
        """The lowest-loss verified candidate that meets every constraint and the quality target."""
        meeting = [c for c in self.verified_front if self.goal.meets_target(c["loss"])]
        return min(meeting, key=lambda c: c["loss"]) if meeting else None

    def unmeasured(self) -> list[dict[str, Any]]:
        return [c for c in self.candidates if not c.get("measured") and not c.get("failed")]

    def nearest_to_feasible(self, k: int = 3) -> list[tuple[float, dict[str, Any]]]:
        """Up to ``k`` not-yet-verified candidates by their largest relative constraint violation (by the best-known
        latency; 0 means predicted feasible)."""
        scored = [(_relative_violation(c, self.goal), c) for c in self.unmeasured()]
        return sorted(scored, key=lambda item: (item[0], item[1]["loss"]))[:k]

    def anchors(self) -> list[dict[str, Any]]:
        """The parameters a narrowed or widened space is built around: the verified front, else the candidates
        nearest to feasibility."""
        chosen = self.verified_front or [c for _v, c in self.nearest_to_feasible()]
        return [c["params"] for c in chosen]

    def hypervolume_gain(self) -> float | None:
        """Relative hypervolume gain of the last round that searched over the one before (None with fewer than two)."""
        if len(self.hypervolume) < 2:
            return None
        before, after = self.hypervolume[-2]["value"], self.hypervolume[-1]["value"]
        return (after - before) / before if before > 0 else (1.0 if after > 0 else 0.0)

    # ------------------------------------------------------------------ the planner's view

    def summary(self) -> dict[str, Any]:
        """A JSON summary: budgets, what ran, the verified front, the predictor's errors, hypervolume per round."""
        verification_out = self.last_verification or {}
        errors = verification_out.get("errors", {})
        predictor = {
            phase: {
                "stated_mape_pct": _round(errors.get("stated_mape", {}).get(phase)),
                "verified_mean_abs_error_pct": _round(_mean_abs(values)),
                "refit_reason": errors.get("refit", {}).get(phase),
            }
            for phase, values in errors.get("errors_pct", {}).items()
        }
        met = self.goal_met_by
        return {
            "goal": self.goal.describe(),
            "round": self.round,
            "budgets": {
                name: {"limit": self.limit(name), "used": _round(self.used[name]), "left": _round(self.left(name))}
                for name in ("wall_time_s", "trials", "measurements", "rounds")
            },
            "calibrated": self.calibrated,
            "searches": self.searches,
            "candidates": len(self.candidates),
            "verified": sum(1 for c in self.candidates if c.get("measured")),
            "verified_front": [_brief(c, self.goal) for c in self.verified_front],
            "goal_met": met is not None,
            "goal_met_by": None if met is None else _brief(met, self.goal),
            "nearest_to_feasible": [
                {**_brief(c, self.goal), "relative_violation": _round(v)} for v, c in self.nearest_to_feasible()
            ],
            "predictor": predictor,
            "hypervolume": self.hypervolume,
            "exported": self.exported,
            "impossible": self.impossible,
        }


def build_state(db_url: str, goal: Goal, stages: list[dict[str, Any]], decisions: list[Decision]) -> State:
    """The state of a run from its stage rows and decision log (and its searches in the store)."""
    outputs = {s["name"]: s["output"] for s in stages if s["status"] == "done"}
    partial = {s["name"]: s["output"] for s in stages}
    rounds_done = max((d.round for d in decisions if d.accepted and d.planner != "orchestrator"), default=0)
    searches = [
        {
            "search_id": partial[d.stage]["search_id"],
            "round": d.round,
            "space": d.arguments.get("space", "full"),
            "trials": d.arguments["trials"],
            "done": d.stage in outputs,
        }
        for d in decisions
        if d.accepted and d.action == "search" and partial.get(d.stage, {}).get("search_id") is not None
    ]
    used = {
        "wall_time_s": sum(s["duration_s"] or 0.0 for s in stages if s["status"] == "done"),
        "trials": sum(d.arguments["trials"] for d in decisions if d.accepted and d.action == "search"),
        "measurements": sum(o.get("device_measurements", 0) for o in outputs.values()),
        "rounds": rounds_done,
    }
    state = State(goal, rounds_done + 1, used, outputs, decisions, searches)
    state.candidates = _candidates(db_url, searches, state)
    state.verified_front = verification.front(state.candidates, goal.constraints, measured_only=True)
    state.hypervolume = _hypervolume_per_round(db_url, searches, state.candidates, goal)
    state.impossible = (outputs.get("probe") or {}).get("unmeetable")
    stops = [d for d in decisions if d.accepted and d.action == "stop"]
    state.stopped = stops[-1].reason if stops else None
    return state


def _candidates(db_url: str, searches: list[dict[str, Any]], state: State) -> list[dict[str, Any]]:
    """Every complete candidate of the run's finished searches, with what the verifications measured."""
    measured: dict[tuple[int, int], dict[str, Any]] = {}
    failed: dict[tuple[int, int], str] = {}
    for output in state.stage_outputs("verify"):
        measured.update({(c["search_id"], c["number"]): c for c in output.get("measured", [])})
        failed.update({tuple(key): reason for key, reason in output.get("not_verified", [])})
    candidates = []
    for search in searches:
        if not search["done"]:
            continue
        for candidate in finished_candidates(db_url, search["search_id"]):
            key = (search["search_id"], candidate["number"])
            candidate["trial_predicted"] = dict(candidate["predicted"])
            if key in measured:
                candidate["measured"] = measured[key]["measured"]
                candidate["predicted"] = measured[key]["predicted"]
            if key in failed:
                candidate["failed"] = failed[key]
            candidate["round"] = search["round"]
            candidates.append(candidate)
    return candidates


def _hypervolume_per_round(
    db_url: str, searches: list[dict[str, Any]], candidates: list[dict[str, Any]], goal: Goal
) -> list[dict[str, Any]]:
    """After each round that searched: the hypervolume of the feasible candidates found so far (by the latency
    their search predicted), against the first search's reference point, so that rounds compare."""
    if not candidates:
        return []
    with session_scope(db_url) as session:
        reference = session.scalar(select(Search.reference_point).where(Search.id == searches[0]["search_id"]))
    if not reference:
        return []
    names = goal.objective_names()
    history = []
    for round_ in sorted({c["round"] for c in candidates}):
        found = [c for c in candidates if c["round"] <= round_ and feasible(_trial_values(c), goal.constraints)]
        points = np.array([[_trial_values(c)[n] for n in names] for c in found]).reshape(-1, len(names))
        value = hypervolume(points[pareto_mask(points)], reference) if len(points) else 0.0
        history.append({"round": round_, "value": float(value), "candidates": len(found)})
    return history


def _trial_values(candidate: dict[str, Any]) -> dict[str, float]:
    """The candidate's objective values as its search saw them (loss and predicted latency)."""
    return {"loss": candidate["loss"], **{f"{p}_ms": candidate["trial_predicted"][p] for p in verification.PHASES}}


def _relative_violation(candidate: dict[str, Any], goal: Goal) -> float:
    values = {"loss": float(candidate["loss"])}
    values.update({f"{p}_ms": verification.estimate(candidate, p) for p in verification.PHASES})
    worst = 0.0
    for c in goal.constraints:
        bound = c.max if c.max is not None else c.min
        worst = max(worst, c.violation(values[c.metric]) / max(abs(bound), 1e-12))
    return worst


def _brief(candidate: dict[str, Any], goal: Goal) -> dict[str, Any]:
    return {
        "search_id": candidate["search_id"],
        "trial": candidate["number"],
        "loss": _round(candidate["loss"]),
        "measured_ms": {p: _round(v) for p, v in (candidate.get("measured") or {}).items()},
        "predicted_ms": {p: _round(v) for p, v in candidate["predicted"].items()},
        "meets_target": goal.meets_target(candidate["loss"]),
    }


def _mean_abs(values: list[float] | None) -> float | None:
    return float(np.mean(np.abs(values))) if values else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
