"""Agent-as-a-Judge: grade DevAI tasks and hilnas's own runs requirement by requirement, with evidence.

The steps follow the Agent-as-a-Judge paper: build a graph of the workspace (``workspace``), locate and
read the files a requirement concerns, search code and retrieve trajectory steps (``retrieval``,
``evidence``), then decide with an LLM (``verdict``) or, with none configured, with deterministic rules
(``offline``). ``devai`` loads and validates tasks, ``metrics`` computes I, D, solve rate and alignment,
``pipeline`` holds the checks for hilnas's own searches, ``report``/``store`` write the results.
"""

from agents.judge.agent import JudgeAgent, TaskJudgment, WorkspaceEvidence
from agents.judge.devai import DevAITask, Requirement, load_human_labels, load_task, load_tasks
from agents.judge.metrics import alignment, devai_metrics
from agents.judge.runs import judge_devai, judge_search
from agents.judge.store import save_judgment
from agents.judge.verdict import Evidence, RequirementVerdict
from agents.judge.workspace import Workspace

__all__ = [
    "DevAITask",
    "Evidence",
    "JudgeAgent",
    "Requirement",
    "RequirementVerdict",
    "TaskJudgment",
    "Workspace",
    "WorkspaceEvidence",
    "alignment",
    "devai_metrics",
    "judge_devai",
    "judge_search",
    "load_human_labels",
    "load_task",
    "load_tasks",
    "save_judgment",
]
