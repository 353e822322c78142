"""Judge–human alignment on DevAI: ``python -m benchmarks.judge_alignment --tasks DIR --workspaces DIR --human DIR``.

Runs the judge over every task that has a workspace (``WORKSPACES/<task name>/``) and human labels
(``HUMAN/<task name>.json``, the task file with each requirement's ``satisfied`` set), gray-box when
``TRAJECTORIES/<task name>.json`` exists, and prints per mode (offline always; LLM when
``HILNAS_LLM_MODEL`` is set): agreement, Cohen's kappa, precision and recall against the humans, I and D
for judge and humans, and time and cost per requirement. DevAI's workspaces and human labels are not
part of hilnas; point the options at a local copy of them.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from agents.judge.agent import TaskJudgment
from agents.judge.devai import DevAITask, load_tasks
from agents.judge.metrics import alignment, devai_metrics
from agents.judge.runs import judge_devai
from agents.llm import LLMGateway, gateway_from_settings
from hilnas.errors import UserError

console = Console()


@dataclass(frozen=True)
class Case:
    task: DevAITask
    workspace: Path
    human: Path
    trajectory: Path | None


@dataclass
class ModeResult:
    judgments: list[TaskJudgment] = field(default_factory=list)


def find_cases(tasks: Path, workspaces: Path, human: Path, trajectories: Path | None) -> list[Case]:
    """Tasks that have both a workspace and human labels; the rest are skipped."""
    for name, directory in (("--workspaces", workspaces), ("--human", human)):
        if not directory.is_dir():
            raise UserError(f"The {name} directory {directory} does not exist.")
    cases = []
    for task in load_tasks(tasks):
        workspace, labels = workspaces / task.name, human / f"{task.name}.json"
        if workspace.is_dir() and labels.is_file():
            trajectory = trajectories / f"{task.name}.json" if trajectories is not None else None
            cases.append(Case(task, workspace, labels, trajectory if trajectory and trajectory.is_file() else None))
    return cases


def run_mode(cases: list[Case], gateway: LLMGateway | None, skip: bool, label: str) -> ModeResult:
    result = ModeResult()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"judging ({label})", total=len(cases))
        for case in cases:
            result.judgments.append(
                judge_devai(
                    case.task.source,
                    case.workspace,
                    trajectory_path=case.trajectory,
                    human_path=case.human,
                    skip_failed_prerequisites=skip,
                    gateway=gateway,
                )
            )
            progress.advance(bar)
    return result


def summarise(mode: str, result: ModeResult) -> dict[str, str]:
    judged, humans, flat_judge, flat_human = [], [], [], []
    for j in result.judgments:
        labels = {rid: None if v.verdict == "error" else v.satisfied for rid, v in j.verdicts.items()}
        judged.append(labels)
        humans.append(j.human)
        for rid in sorted(j.verdicts):
            flat_judge.append(labels[rid])
            flat_human.append(j.human[rid])
    tasks = [j.task for j in result.judgments]
    judge_metrics, human_metrics = devai_metrics(tasks, judged), devai_metrics(tasks, humans)
    aligned = alignment(flat_judge, flat_human)
    n = len(flat_judge)
    seconds = sum(j.elapsed_s for j in result.judgments)
    costs = [j.cost_usd for j in result.judgments]
    if mode == "offline":
        cost = "0 (no LLM)"
    elif any(c is None for c in costs):
        cost = "unknown price"
    else:
        cost = f"${sum(costs) / n:.5f}"
    return {
        "mode": mode,
        "tasks": str(len(tasks)),
        "requirements": str(n),
        "errors": str(aligned.n_undecided),
        "agreement": _f(aligned.agreement),
        "kappa": _f(aligned.kappa),
        "precision": _f(aligned.precision),
        "recall": _f(aligned.recall),
        "I judge": _f(judge_metrics.independent),
        "I human": _f(human_metrics.independent),
        "D judge": _f(judge_metrics.dependent),
        "D human": _f(human_metrics.dependent),
        "s / req": f"{seconds / n:.3f}",
        "cost / req": cost,
    }


def _f(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=Path, required=True, help="DevAI task files (instances/*.json)")
    parser.add_argument("--workspaces", type=Path, required=True, help="one folder per task, named as the task")
    parser.add_argument("--human", type=Path, required=True, help="human labels, <task name>.json per task")
    parser.add_argument("--trajectories", type=Path, help="trajectories, <task name>.json per task (gray-box)")
    parser.add_argument("--skip-failed-prerequisites", action="store_true")
    parser.add_argument("--quick", action="store_true", help="only the first 5 tasks found")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        console.print(f"error: {exc.message}", highlight=False, soft_wrap=True)
        return 2


def run(args: argparse.Namespace) -> int:
    cases = find_cases(args.tasks, args.workspaces, args.human, args.trajectories)
    if not cases:
        console.print(
            f"No task in {args.tasks} has both a workspace in {args.workspaces} and human labels in {args.human}: "
            "nothing was judged and no alignment figure exists. DevAI's workspaces and human labels do not ship "
            "with hilnas; point --workspaces and --human at a local copy of them.",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    if args.quick:
        cases = cases[:5]
    modes: list[tuple[str, LLMGateway | None]] = [("offline", None)]
    if (gateway := gateway_from_settings()) is not None:
        modes.append((f"llm ({gateway.model})", gateway))
    else:
        console.print("HILNAS_LLM_MODEL is not set: only the offline mode runs.")
    table = Table(title=f"Judge–human alignment on {len(cases)} DevAI task(s)")
    rows = [summarise(label, run_mode(cases, gw, args.skip_failed_prerequisites, label)) for label, gw in modes]
    for column in rows[0]:
        table.add_column(column, justify="left" if column == "mode" else "right")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
