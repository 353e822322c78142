"""``hilnas judge ...``: grade a DevAI task on a workspace, or a hilnas search against its requirement set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hilnas.errors import UserError

app = typer.Typer(help="Agent-as-a-Judge: grade DevAI tasks and hilnas's own runs.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option("--db-url", help="result store (default: HILNAS_DB_URL)")]
OfflineOption = Annotated[bool, typer.Option("--offline", help="judge without an LLM even if one is configured")]


@app.command("devai")
def devai(
    task: Annotated[Path, typer.Option("--task", help="DevAI task file (JSON)")],
    workspace: Annotated[Path, typer.Option("--workspace", help="the workspace the agent under test left")],
    trajectory: Annotated[Path | None, typer.Option("--trajectory", help="the agent's trajectory (gray-box)")] = None,
    human: Annotated[
        Path | None, typer.Option("--human", help="human labels: the task file with 'satisfied' set")
    ] = None,
    skip_failed_prerequisites: Annotated[
        bool, typer.Option("--skip-failed-prerequisites", help="do not judge requirements whose prerequisites failed")
    ] = False,
    offline: OfflineOption = False,
    db_url: DbOption = None,
) -> None:
    """Judge every requirement of TASK on WORKSPACE; store the verdicts and write Markdown/HTML reports."""
    from agents.judge.runs import judge_devai

    with _progress() as on_verdict:
        judgment = judge_devai(
            task,
            workspace,
            trajectory_path=trajectory,
            human_path=human,
            skip_failed_prerequisites=skip_failed_prerequisites,
            on_verdict=on_verdict,
            **({"gateway": None} if offline else {}),
        )
    for warning in judgment.task.warnings:
        errors.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    _finish(judgment, db_url)


@app.command("search")
def search(
    search_id: Annotated[int, typer.Argument(help="id of the search to judge")],
    requirements: Annotated[
        Path | None, typer.Option("--requirements", help="requirement set in DevAI format (default: built-in)")
    ] = None,
    offline: OfflineOption = False,
    db_url: DbOption = None,
) -> None:
    """Judge a search's outputs in the store (tool checks plus LLM-judged soft criteria)."""
    from agents.judge.runs import judge_search

    with _progress() as on_verdict:
        judgment = judge_search(
            search_id,
            db_url,
            requirements_path=requirements,
            on_verdict=on_verdict,
            **({"gateway": None} if offline else {}),
        )
    _finish(judgment, db_url)


def _progress():  # noqa: ANN202 - a context manager yielding the per-verdict callback
    from contextlib import contextmanager

    from rich.progress import Progress, SpinnerColumn, TextColumn

    @contextmanager
    def bar():  # noqa: ANN202
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=errors, transient=True) as progress:
            task = progress.add_task("judging requirements", total=None)
            yield lambda v: progress.update(task, description=f"judged R{v.requirement_id}: {v.verdict}")

    return bar()


def _finish(judgment, db_url: str | None) -> None:  # noqa: ANN001 - TaskJudgment, imported lazily
    from rich.markup import escape

    from agents.judge.report import judgment_metrics
    from agents.judge.store import save_judgment

    by_llm = [v for v in judgment.verdicts.values() if v.decided_by == "llm"]
    if by_llm and all(v.verdict == "error" for v in by_llm):  # nothing worth storing: say why in one sentence
        raise UserError(f"No LLM verdict succeeded ({judgment.model}): {by_llm[0].justification.rstrip('.')}.")
    saved = save_judgment(judgment, db_url)
    table = Table("R", "verdict", "by", "justification", title=f"{judgment.task.name} ({judgment.mode} mode)")
    for v in judgment.verdicts.values():
        colour = {"satisfied": "green", "unsatisfied": "red", "error": "yellow"}[v.verdict]
        table.add_row(f"R{v.requirement_id}", f"[{colour}]{v.verdict}[/]", v.decided_by, escape(v.justification))
    console.print(table)
    metrics = judgment_metrics(judgment)
    shown = {k: "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for k, v in metrics.items()}
    summary = ", ".join(f"{k} {v}" for k, v in shown.items())
    console.print(f"Mode: {judgment.mode}. {summary}.", highlight=False)
    console.print(f"Judge run {saved.run_id} stored; reports: {saved.markdown_path} and {saved.html_path}")
