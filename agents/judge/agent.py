"""The judge agent: walks a task's requirements in prerequisite order and decides each one.

A requirement is decided by a tool when it names a ``check`` (pipeline requirement sets), by the LLM
on collected evidence when a gateway is configured, and otherwise by the deterministic offline rules.
With ``skip_failed_prerequisites`` a requirement whose prerequisite was not satisfied is not judged
(it counts as unsatisfied, marked ``skipped``), which saves LLM calls the D metric would not reward.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from agents.judge.devai import DevAITask, Requirement
from agents.judge.evidence import EvidenceCollector
from agents.judge.offline import offline_verdict
from agents.judge.verdict import AnswerError, Evidence, RequirementVerdict, VerdictLabel, build_messages, parse_answer
from agents.llm import LLMGateway

Mode = Literal["llm", "offline"]
# After this many failed calls in a row (each already retried) the judge stops calling an LLM that is down.
MAX_FAILED_CALLS_IN_A_ROW = 3
CheckResult = tuple[VerdictLabel, str, list[Evidence]]
ToolCheck = Callable[[], CheckResult]


class EvidenceSource(Protocol):
    """Where a judge finds evidence: a workspace (DevAI) or the store (hilnas's own runs)."""

    def collect(self, criteria: str) -> list[Evidence]: ...

    def overview(self) -> str: ...

    def offline_verdict(self, criteria: str) -> CheckResult: ...


class WorkspaceEvidence(EvidenceCollector):
    """A workspace as an evidence source: its file tree, collected excerpts and the offline rules."""

    def overview(self) -> str:
        return self.workspace.tree()

    def offline_verdict(self, criteria: str) -> CheckResult:
        return offline_verdict(criteria, self.workspace)


@dataclass
class TaskJudgment:
    """All verdicts for one task (or one hilnas run), the mode that produced them, time and cost."""

    task: DevAITask
    kind: Literal["devai", "search"]
    subject: str  # the workspace path, or "search <id>"
    mode: Mode
    model: str | None
    verdicts: dict[int, RequirementVerdict] = field(default_factory=dict)
    human: dict[int, bool] | None = None
    elapsed_s: float = 0.0
    search_id: int | None = None

    @property
    def cost_usd(self) -> float | None:
        costs = [v.cost_usd for v in self.verdicts.values()]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    @property
    def prompt_tokens(self) -> int:
        return sum(v.prompt_tokens for v in self.verdicts.values())

    @property
    def completion_tokens(self) -> int:
        return sum(v.completion_tokens for v in self.verdicts.values())


class JudgeAgent:
    """Judges every requirement of a task against an evidence source."""

    def __init__(
        self,
        gateway: LLMGateway | None,
        *,
        skip_failed_prerequisites: bool = False,
        checks: Mapping[str, ToolCheck] | None = None,
        on_verdict: Callable[[RequirementVerdict], None] | None = None,
    ) -> None:
        self.gateway = gateway
        self.skip_failed_prerequisites = skip_failed_prerequisites
        self.checks = dict(checks or {})
        self.on_verdict = on_verdict
        self._failed_calls_in_a_row = 0

    @property
    def mode(self) -> Mode:
        return "offline" if self.gateway is None else "llm"

    def judge(
        self, task: DevAITask, source: EvidenceSource, *, kind: Literal["devai", "search"] = "devai", subject: str = ""
    ) -> TaskJudgment:
        started = time.perf_counter()
        judgment = TaskJudgment(task, kind, subject, self.mode, getattr(self.gateway, "model", None))
        for requirement_id in task.order():
            requirement = task.requirement(requirement_id)
            begun = time.perf_counter()
            verdict = self._decide(task, requirement, source, judgment.verdicts)
            verdict.elapsed_s = time.perf_counter() - begun
            judgment.verdicts[requirement_id] = verdict
            if self.on_verdict is not None:
                self.on_verdict(verdict)
        judgment.verdicts = dict(sorted(judgment.verdicts.items()))
        judgment.elapsed_s = time.perf_counter() - started
        return judgment

    def _decide(
        self,
        task: DevAITask,
        requirement: Requirement,
        source: EvidenceSource,
        decided: dict[int, RequirementVerdict],
    ) -> RequirementVerdict:
        failed = [p for p in requirement.prerequisites if not decided[p].satisfied]
        if self.skip_failed_prerequisites and failed:
            names = ", ".join(f"R{p}" for p in failed)
            return RequirementVerdict(
                requirement.id,
                requirement.criteria,
                "unsatisfied",
                f"Not judged: prerequisite {names} is not satisfied.",
                "skipped",
            )
        if requirement.check is not None:
            return self._tool(requirement)
        if self.gateway is None:
            label, justification, evidence = source.offline_verdict(requirement.criteria)
            return RequirementVerdict(requirement.id, requirement.criteria, label, justification, "offline", evidence)
        satisfied = [decided[p].criteria for p in requirement.prerequisites if decided[p].satisfied]
        return self._llm(task, requirement, source, satisfied)

    def _tool(self, requirement: Requirement) -> RequirementVerdict:
        check = self.checks.get(requirement.check or "")
        if check is None:
            return RequirementVerdict(
                requirement.id,
                requirement.criteria,
                "error",
                f"The requirement names the check {requirement.check!r}, which this judge does not have.",
                "tool",
            )
        label, justification, evidence = check()
        return RequirementVerdict(requirement.id, requirement.criteria, label, justification, "tool", evidence)

    def _llm(
        self, task: DevAITask, requirement: Requirement, source: EvidenceSource, satisfied_prerequisites: list[str]
    ) -> RequirementVerdict:
        assert self.gateway is not None
        if self._failed_calls_in_a_row >= MAX_FAILED_CALLS_IN_A_ROW:
            reason = (
                f"Not sent: the last {MAX_FAILED_CALLS_IN_A_ROW} LLM calls failed, so the LLM is taken as unavailable."
            )
            return RequirementVerdict(requirement.id, requirement.criteria, "error", reason, "llm")
        evidence = source.collect(requirement.criteria)
        messages = build_messages(
            requirement.criteria, task.query, evidence, source.overview(), satisfied_prerequisites
        )
        reply = self.gateway.complete(messages)
        call = reply.call
        accounting = {
            "llm_calls": 1,
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens,
            "cost_usd": 0.0 if call.cached or not reply.ok else call.cost_usd,  # failed and cached calls cost 0
        }
        self._failed_calls_in_a_row = 0 if reply.ok else self._failed_calls_in_a_row + 1
        if not reply.ok:
            reason = f"The LLM call failed after {call.attempts} attempt(s): {call.error}"
            return RequirementVerdict(
                requirement.id, requirement.criteria, "error", reason, "llm", evidence, **accounting
            )
        try:
            label, justification, cited = parse_answer(reply.text or "", evidence)
        except AnswerError as exc:
            return RequirementVerdict(
                requirement.id,
                requirement.criteria,
                "error",
                f"Unusable LLM answer: {exc}.",
                "llm",
                evidence,
                **accounting,
            )
        return RequirementVerdict(
            requirement.id, requirement.criteria, label, justification, "llm", cited, **accounting
        )
