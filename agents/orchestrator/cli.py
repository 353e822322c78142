"""``hilnas run GOAL`` / ``hilnas run --resume ID``: the orchestrating agent; ``hilnas agent list|show``: its runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hilnas.errors import UserError
from search.staged_cli import AddressOption, DbOption, store_url

app = typer.Typer(help="The orchestrating agent's runs (start one with `hilnas run GOAL`).", no_args_is_help=True)
console = Console()


def run(
    goal: Annotated[str | None, typer.Argument(help="goal file (YAML/TOML/JSON) or built-in goal name")] = None,
    resume: Annotated[int | None, typer.Option("--resume", help="continue the agent run with this id")] = None,
    planner: Annotated[str, typer.Option("--planner", help="rule (default, offline) or llm (HILNAS_LLM_*)")] = "rule",
    db_url: DbOption = None,
    address: AddressOption = None,
) -> None:
    """Turn GOAL into a plan of stages (calibrate, search, verify, export, judge) and run it, round by round."""
    from agents.orchestrator.goal import load_goal
    from agents.orchestrator.orchestrator import Orchestrator, planner_for

    if (goal is None) == (resume is None):
        raise UserError("Give either a goal file (hilnas run GOAL) or a run to continue (hilnas run --resume ID).")
    if resume is not None:
        orchestrator = Orchestrator.resume(resume, store_url(db_url), console, address=address)
        if orchestrator.run.status() == "finished":
            console.print(f"Agent run {resume} has already finished; its report: {orchestrator.write_report()}")
            return
    else:
        parsed = load_goal(goal)
        chosen = planner_for(planner)  # an unusable planner is refused before anything is stored
        orchestrator = Orchestrator.start(parsed, chosen, store_url(db_url), console, address=address)
    what = f"{orchestrator.goal.name}, {orchestrator.planner.name} planner"
    console.print(f"Agent run [bold]{orchestrator.run.run_id}[/] ({what}): {orchestrator.goal.describe()}")
    state = orchestrator.execute()
    console.print(f"[bold]{state.stopped}[/]", highlight=False)
    console.print(f"Report: {orchestrator.report_path}")


@app.command("list")
def list_(db_url: DbOption = None) -> None:
    """Every agent run: its planner, status and how it ended (the last stop decision's reason)."""
    from agents.orchestrator import decisions
    from agents.orchestrator.orchestrator import KIND
    from search.staged import StagedRun, list_runs

    url = store_url(db_url)
    table = Table("id", "name", "planner", "status", "outcome", "created")
    for row in list_runs(url, KIND):
        stops = [d.reason for d in decisions.load(url, row["id"]) if d.accepted and d.action == "stop"]
        planner = StagedRun(url, row["id"]).spec()["planner"]
        created = f"{row['created_at']:%Y-%m-%d %H:%M}"
        table.add_row(str(row["id"]), row["name"], planner, row["status"], stops[-1] if stops else "", created)
    console.print(table)


@app.command("show")
def show(run_id: int, db_url: DbOption = None) -> None:
    """A run's report: plan, decisions with their reasons, verified front and the judge's summary."""
    from rich.markdown import Markdown

    from agents.orchestrator.orchestrator import Orchestrator

    orchestrator = Orchestrator.resume(run_id, store_url(db_url), console, planner=_NoPlanner())
    path = orchestrator.write_report()
    console.print(Markdown(path.read_text(encoding="utf-8")))
    console.print(f"Report: {path}")


class _NoPlanner:
    """Showing a run plans nothing, so it needs no LLM even for a run planned by one."""

    name = "(showing)"

    def plan(self, state, propose) -> None:  # noqa: ANN001
        raise AssertionError("showing a run plans nothing")
