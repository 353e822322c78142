"""The agent's loop: plan a round, check and store every decision, run the accepted stages, repeat; then judge.

A run is a ``hilnas_pipeline_runs`` row of kind "agent" whose plan grows: the backbone and a feasibility
probe first (the smallest architecture measured on the device: a goal no architecture can meet stops here,
before any search budget is spent), then one stage per accepted action, appended with its decision in one
transaction, and the judge's stage at the end. ``resume`` runs the planned stages that have not finished
(an interrupted search resumes its search) and goes on planning from the last stored decision.

The orchestrator, not the planner, holds the budgets: every call is checked (``limits.RoundCheck``), the
rounds and wall time are checked before each round and each stage, and a round in which the planner got
nothing accepted is planned again by the rule planner.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from agents.orchestrator import decisions as log
from agents.orchestrator.actions import ACTIONS, Toolbox
from agents.orchestrator.decisions import Decision
from agents.orchestrator.goal import Goal
from agents.orchestrator.limits import RoundCheck
from agents.orchestrator.planners import Planner, RulePlanner
from agents.orchestrator.state import State, build_state
from hilnas.errors import Interrupted
from hilnas.settings import get_settings
from search.families.mobilellm_flash.pipeline import FlashWork, smallest_candidate_values, unmeetable_constraint
from search.families.mobilellm_flash.space import ArchConfig
from search.staged import StageContext, StagedRun

KIND = "agent"
PREAMBLE = ("backbone", "probe")
ORCHESTRATOR = "orchestrator"


class Orchestrator:
    """One agent run; create it with ``start`` or ``resume``, then ``execute``."""

    def __init__(
        self,
        run: StagedRun,
        goal: Goal,
        planner: Planner,
        console: Console,
        address: str | None = None,
        judge_offline: bool = False,
    ) -> None:
        self.run, self.goal, self.planner, self.console = run, goal, planner, console
        self.judge_offline = judge_offline
        self.device = goal.device or get_settings().device
        self.workdir = Path(get_settings().artifact_dir) / f"agent-run-{run.run_id}"
        self.work = FlashWork(goal.pipeline_spec(), run.db_url, self.device, address, console, self.workdir)

    @classmethod
    def start(cls, goal: Goal, planner: Planner, db_url: str, console: Console, **kwargs: Any) -> Orchestrator:
        spec = {"goal": goal.model_dump(mode="json"), "planner": planner.name}
        run = StagedRun.create(db_url, KIND, goal.name, spec, list(PREAMBLE))
        for position, (stage, reason) in enumerate(
            [
                ("backbone", "every plan starts from the backbone: trained once and cached, or loaded"),
                ("probe", "measure the smallest architecture first: a goal it cannot meet stops before any search"),
            ]
        ):
            log.record(run, Decision(0, ORCHESTRATOR, stage, {}, reason, True, position=position))
        return cls(run, goal, planner, console, **kwargs)

    @classmethod
    def resume(
        cls, run_id: int, db_url: str, console: Console, planner: Planner | None = None, **kwargs: Any
    ) -> Orchestrator:
        run = StagedRun.load(db_url, run_id, KIND)
        spec = run.spec()
        return cls(run, Goal.model_validate(spec["goal"]), planner or planner_for(spec["planner"]), console, **kwargs)

    # ------------------------------------------------------------------ the loop

    def execute(self) -> State:
        """Run (or continue) to the end: the planned stages, new rounds until a stop, then the judge."""
        self.run.set_status("running")
        try:
            self._preamble()
            self._run_planned()
            while (state := self.state()).stopped is None:
                limit = self._limit(state)
                if limit is not None:
                    self._decide_stop(state, limit)
                    break
                self._plan_round(state)
                self._run_planned()
            self._judge()
        except (KeyboardInterrupt, Interrupted) as exc:
            self.run.set_status("interrupted", "interrupted")
            raise Interrupted(
                f"Agent run {self.run.run_id} was interrupted; continue it with "
                f"`hilnas run --resume {self.run.run_id}`."
            ) from exc
        except BaseException as exc:
            self.run.set_status("failed", str(exc) or type(exc).__name__)
            raise
        self.run.set_status("finished")
        state = self.state()
        self.write_report(state)
        return state

    @property
    def report_path(self) -> Path:
        return self.workdir / "report.md"

    def write_report(self, state: State | None = None) -> Path:
        """Write the run's Markdown report (plan, decisions, front, judge) next to its artifacts."""
        from agents.orchestrator.report import render_report, write_report

        state = state or self.state()
        text = render_report(
            self.run.run_id, self.goal.name, self.run.spec()["planner"], self.run.status(), self.run.stages(), state
        )
        return write_report(self.report_path, text)

    def state(self) -> State:
        return build_state(self.run.db_url, self.goal, self.run.stages(), log.load(self.run.db_url, self.run.run_id))

    def _preamble(self) -> None:
        done = {s["name"] for s in self.run.stages() if s["status"] == "done"}
        if "backbone" not in done:
            self._announce("backbone", "training or loading the backbone")
            self.run.run_stage("backbone", lambda _context: self.work.backbone(), {})
        if "probe" not in done:
            self._announce("probe", "can the smallest architecture meet the constraints?")
            self.run.run_stage("probe", self._probe, {"backbone": self.state().backbone})
        state = self.state()
        if state.impossible and state.stopped is None:
            self._decide_stop(state, f"impossible: {state.impossible} No search budget was spent.")

    def _probe(self, context: StageContext) -> dict[str, Any]:
        arch = ArchConfig.model_validate(context.outputs["backbone"]["arch"])
        spec = self.work.spec
        values, fresh = smallest_candidate_values(spec, arch, self.run.db_url, self.console, self.work.address)
        return {"values": values, "unmeetable": unmeetable_constraint(spec, values), "device_measurements": int(fresh)}

    def _limit(self, state: State) -> str | None:
        """A budget the orchestrator itself stops on, whatever the planner would do."""
        if state.round > self.goal.budgets.rounds:
            return f"budget spent: rounds ({state.used['rounds']:g} of {self.goal.budgets.rounds})"
        if state.left("wall_time_s") <= 0:
            return f"budget spent: wall time ({state.used['wall_time_s']:.0f} of {self.goal.budgets.wall_time_s:g} s)"
        return None

    def _plan_round(self, state: State) -> None:
        check = RoundCheck(state)
        summary = state.summary()
        made: list[Decision] = []

        def propose(planner: str, action: str, arguments: str | dict[str, Any], reason: str) -> Decision:
            args, rejection = check.check(action, arguments)
            stored = args.model_dump() if args is not None else _as_stored(arguments)
            position = len(made)
            stage = f"r{state.round}.{position}-{action}" if args is not None and ACTIONS[action].run else None
            decision = Decision(
                state.round, planner, action, stored, reason, args is not None, rejection, stage, position, summary
            )
            log.record(self.run, decision)
            made.append(decision)
            self._show(decision)
            return decision

        self.console.print(f"[bold magenta]round {state.round}[/]: {self.planner.name} planner")
        self.planner.plan(state, propose)
        if not any(d.accepted for d in made):
            refused = sum(not d.accepted for d in made)
            self.console.print(
                f"[yellow]{refused} refused call(s) and nothing accepted: the rule planner plans round {state.round}[/]"
            )
            RulePlanner(label="rule (fallback)").plan(state, propose)
        if not any(d.accepted for d in made):
            self._decide_stop(state, "no planner proposed an action the budgets allow")

    def _run_planned(self) -> None:
        """Run every accepted stage that has not finished, in plan order."""
        decisions = {d.stage: d for d in log.load(self.run.db_url, self.run.run_id) if d.accepted and d.stage}
        for stage in self.run.stages():
            decision = decisions.get(stage["name"])
            if decision is None or stage["status"] in ("done", "skipped") or stage["name"] == "judge":
                continue
            state = self.state()
            if state.left("wall_time_s") <= 0:
                reason = (
                    f"budget spent: wall time ({state.used['wall_time_s']:.0f} of {self.goal.budgets.wall_time_s:g} s)"
                )
                self.run.skip_stage(stage["name"], reason)
                if state.stopped is None:
                    self._decide_stop(state, reason)
                continue
            action = ACTIONS[decision.action]
            args = action.arguments.model_validate(decision.arguments)
            box = Toolbox(self.work, self.goal, state, self.run.run_id, decision.round)
            self._announce(stage["name"], _call(decision))
            self.run.run_stage(stage["name"], partial(action.run, box, args), state.outputs, stage["output"])

    def _decide_stop(self, state: State, reason: str) -> None:
        """The orchestrator ends the run (a budget, an impossible goal): stored like a planner's stop."""
        self._record_own(int(state.used["rounds"]), "stop", {"reason": reason}, reason, None, state.summary())

    def _record_own(
        self, round_: int, action: str, arguments: dict, reason: str, stage: str | None, summary: dict
    ) -> None:
        position = sum(d.round == round_ for d in log.load(self.run.db_url, self.run.run_id))
        decision = Decision(round_, ORCHESTRATOR, action, arguments, reason, True, None, stage, position, summary)
        log.record(self.run, decision)
        self._show(decision)

    def _judge(self) -> None:
        """The judge's verdict on every search of the run, against the pipeline-output requirement set."""
        stages = {s["name"]: s for s in self.run.stages()}
        if "judge" not in stages:
            state = self.state()
            reason = "every run ends with the judge's report on its own outputs"
            self._record_own(int(state.used["rounds"]), "judge", {}, reason, "judge", state.summary())
        elif stages["judge"]["status"] == "done":
            return
        self._announce("judge", "the pipeline-output requirement set, per search")
        self.run.run_stage("judge", self._judge_searches, {})

    def _judge_searches(self, _context: StageContext) -> dict[str, Any]:
        from agents.judge.runs import judge_search
        from agents.judge.store import save_judgment

        searches = [s["search_id"] for s in self.state().searches if s["done"]]
        judgments = []
        for search_id in searches:
            judgment = judge_search(search_id, self.run.db_url, **({"gateway": None} if self.judge_offline else {}))
            saved = save_judgment(judgment, self.run.db_url, report_dir=self.workdir / "judge")
            verdicts = [v.verdict for v in judgment.verdicts.values()]
            counts = {label: verdicts.count(label) for label in ("satisfied", "unsatisfied", "error")}
            judgments.append(
                {
                    "search_id": search_id,
                    "judge_run_id": saved.run_id,
                    "mode": judgment.mode,
                    "report": str(saved.markdown_path),
                    **counts,
                }
            )
            self.console.print(
                f"judge run {saved.run_id} on search {search_id} ({judgment.mode} mode): {counts['satisfied']} "
                f"satisfied, {counts['unsatisfied']} unsatisfied, {counts['error']} undecided; {saved.markdown_path}"
            )
        note = None if searches else "no search ran, so there is no pipeline output to judge"
        return {"judgments": judgments, "note": note}

    # ------------------------------------------------------------------ progress

    def _announce(self, stage: str, what: str) -> None:
        self.console.print(f"[bold cyan]{stage}[/]: {what}")

    def _show(self, decision: Decision) -> None:
        if decision.accepted:
            self.console.print(
                f"  [green]{_call(decision)}[/] ({decision.planner}): {decision.reason}", highlight=False
            )
        else:
            self.console.print(
                f"  [red]refused {_call(decision)}[/] ({decision.planner}): {decision.rejection}", highlight=False
            )


def planner_for(name: str) -> Planner:
    """The planner a run was started with: ``rule``, or ``llm`` through the gateway ``HILNAS_LLM_*`` configures."""
    from hilnas.errors import UserError

    if name == "rule":
        return RulePlanner()
    if name == "llm":
        from agents.llm import gateway_from_settings
        from agents.orchestrator.planners import LLMPlanner

        gateway = gateway_from_settings()
        if gateway is None:
            raise UserError(
                "The LLM planner needs a model: set HILNAS_LLM_MODEL (and HILNAS_LLM_BASE_URL for a local server)."
            )
        return LLMPlanner(gateway)
    raise UserError(f"Unknown planner {name!r}; choose rule or llm.")


def _call(decision: Decision) -> str:
    arguments = ", ".join(f"{k}={v}" for k, v in decision.arguments.items() if k != "reason")
    return f"{decision.action}({arguments})"


def _as_stored(arguments: str | dict[str, Any]) -> dict[str, Any]:
    """A refused call's arguments as they came (the raw text when it was not a JSON object)."""
    return arguments if isinstance(arguments, dict) else {"raw": str(arguments)[:2000]}
