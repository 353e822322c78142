"""The run's report in Markdown: the goal, the outcome, the plan, every decision with its reason, the verified
front, hypervolume per round, exported programs and the judge's summary. Written next to the run's artifacts
(``<artifact dir>/agent-run-<id>/report.md``) and rebuilt from the store by ``hilnas agent show``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.orchestrator.decisions import Decision
from agents.orchestrator.state import State


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _arguments(decision: Decision) -> str:
    return ", ".join(f"{k}={v}" for k, v in decision.arguments.items() if k != "reason") or "—"


def outcome(state: State, status: str) -> str:
    if state.stopped is not None:
        return f"stopped: {state.stopped}"
    return status


def render_report(run_id: int, name: str, planner: str, status: str, stages: list[dict], state: State) -> str:
    goal = state.goal
    refused = [d for d in state.decisions if not d.accepted]
    lines = [
        f"# Agent run {run_id}: {_cell(name)}",
        "",
        f"- **Goal:** {_cell(goal.describe())}",
        f"- **Planner:** {planner}",
        f"- **Status:** {status}; **outcome:** {_cell(outcome(state, status))}",
        "- **Budgets used:** "
        + ", ".join(
            f"{k} {state.used[k]:.0f} of {state.limit(k):g}"
            for k in ("wall_time_s", "trials", "measurements", "rounds")
        ),
        f"- **Decisions:** {len(state.decisions)} ({len(refused)} refused)",
        "",
        "## Plan",
        "",
        "| # | stage | status | seconds | note |",
        "|---|---|---|---|---|",
    ]
    for i, stage in enumerate(stages):
        seconds = "" if stage["duration_s"] is None else f"{stage['duration_s']:.1f}"
        lines.append(f"| {i} | {stage['name']} | {stage['status']} | {seconds} | {_cell(stage['error'] or '')} |")
    lines += [
        "",
        "## Decisions",
        "",
        "| round | planner | action | arguments | accepted | reason |",
        "|---|---|---|---|---|---|",
    ]
    for d in state.decisions:
        verdict = "yes" if d.accepted else f"no — {_cell(d.rejection)}"
        lines.append(
            f"| {d.round} | {d.planner} | {d.action} | {_cell(_arguments(d))} | {verdict} | {_cell(d.reason)} |"
        )
    lines += ["", "## Hypervolume per round", ""]
    if state.hypervolume:
        lines += ["| round | hypervolume | feasible candidates |", "|---|---|---|"]
        lines += [f"| {h['round']} | {h['value']:.4g} | {h['candidates']} |" for h in state.hypervolume]
    else:
        lines.append("No search finished.")
    lines += ["", "## Verified front", ""]
    if state.verified_front:
        lines += [
            "| search | trial | loss | prefill ms (pred.) | decode ms (pred.) | meets target |",
            "|---|---|---|---|---|---|",
        ]
        for c in state.verified_front:
            m, p = c["measured"], c["predicted"]
            lines.append(
                f"| {c['search_id']} | {c['number']} | {c['loss']:.3f} | {m['prefill']:.3f} ({p['prefill']:.3f}) | "
                f"{m['decode']:.4f} ({p['decode']:.4f}) | {'yes' if goal.meets_target(c['loss']) else 'no'} |"
            )
    else:
        lines.append("No measured candidate meets the constraints.")
    artifacts = [a for o in state.stage_outputs("export") for a in o.get("artifacts", [])]
    if artifacts:
        lines += ["", "## Exported programs", ""]
        for a in artifacts:
            check = "same tokens as PyTorch" if a["matches_pytorch"] else "differs from PyTorch"
            lines.append(f"- trial {a['number']}: `{a['path']}` ({check})")
    judge = state.outputs.get("judge")
    lines += ["", "## Judge", ""]
    if judge is None:
        lines.append("The judge has not run yet.")
    elif not judge["judgments"]:
        lines.append(_cell(judge["note"]))
    for j in (judge or {}).get("judgments", []):
        lines.append(
            f"- search {j['search_id']}: judge run {j['judge_run_id']} ({j['mode']} mode): {j['satisfied']} satisfied, "
            f"{j['unsatisfied']} unsatisfied, {j['error']} undecided — `{j['report']}`"
        )
    return "\n".join(lines) + "\n"


def write_report(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
