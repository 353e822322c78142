"""The two judging jobs the CLI and the benchmark run: a DevAI task on a workspace, and a hilnas search."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agents.judge.agent import JudgeAgent, TaskJudgment, WorkspaceEvidence
from agents.judge.devai import load_human_labels, load_task
from agents.judge.retrieval import Trajectory
from agents.judge.verdict import RequirementVerdict
from agents.judge.workspace import Workspace
from agents.llm import LLMGateway, gateway_from_settings

# DevAI's published trajectory schema, where a development checkout has it beside the repository; without
# it a trajectory gets a structural check only (see ``Trajectory.load``).
DEVAI_TRAJECTORY_SCHEMA = Path(__file__).resolve().parents[2].parent / "shared" / "devai" / "trajectory-schema.json"
_FROM_SETTINGS = object()


def _gateway(gateway: LLMGateway | None | object) -> LLMGateway | None:
    return gateway_from_settings() if gateway is _FROM_SETTINGS else gateway  # type: ignore[return-value]


def judge_devai(
    task_path: Path | str,
    workspace_dir: Path | str,
    *,
    trajectory_path: Path | str | None = None,
    human_path: Path | str | None = None,
    skip_failed_prerequisites: bool = False,
    gateway: LLMGateway | None | object = _FROM_SETTINGS,
    on_verdict: Callable[[RequirementVerdict], None] | None = None,
) -> TaskJudgment:
    """Judge one DevAI task's requirements on a workspace (gray-box when a trajectory is given).

    ``gateway`` defaults to the one ``HILNAS_LLM_*`` configures; pass None to force offline mode.
    """
    task = load_task(task_path)
    human = load_human_labels(human_path, task) if human_path is not None else None
    workspace = Workspace(workspace_dir)
    trajectory = Trajectory.load(trajectory_path, DEVAI_TRAJECTORY_SCHEMA) if trajectory_path is not None else None
    agent = JudgeAgent(_gateway(gateway), skip_failed_prerequisites=skip_failed_prerequisites, on_verdict=on_verdict)
    judgment = agent.judge(task, WorkspaceEvidence(workspace, trajectory), kind="devai", subject=str(workspace.root))
    judgment.human = human
    return judgment


def judge_search(
    search_id: int,
    db_url: str | None = None,
    *,
    requirements_path: Path | str | None = None,
    gateway: LLMGateway | None | object = _FROM_SETTINGS,
    on_verdict: Callable[[RequirementVerdict], None] | None = None,
) -> TaskJudgment:
    """Judge a search in the store against the built-in (or a given) pipeline requirement set."""
    from agents.judge.pipeline import SearchChecks, search_requirements  # pulls in the search package

    task = search_requirements(requirements_path)
    checks = SearchChecks(search_id, db_url)
    agent = JudgeAgent(_gateway(gateway), checks=checks.checks(), on_verdict=on_verdict)
    judgment = agent.judge(task, checks, kind="search", subject=f"search {search_id}")
    judgment.search_id = search_id
    return judgment
