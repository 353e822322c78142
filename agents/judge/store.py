"""Saving a judgment: the run, its verdicts and both reports in one transaction, the reports also on disk.

The report files are written inside the transaction, after the run's id is known; if writing them
fails, the transaction rolls back, so the store never holds a run whose files are missing.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from agents.judge.agent import TaskJudgment
from agents.judge.report import judgment_metrics, render_html, render_markdown
from db.models import JudgeRun, JudgeVerdict
from db.session import session_scope
from hilnas.settings import get_settings


@dataclass(frozen=True)
class SavedReport:
    run_id: int
    markdown_path: Path
    html_path: Path


def task_as_devai(judgment: TaskJudgment) -> dict:
    """The judged task in DevAI format, with the judge's verdicts in ``satisfied`` (None for errors)."""
    task = judgment.task
    return {
        "name": task.name,
        "query": task.query,
        "tags": list(task.tags),
        "requirements": [
            {
                "requirement_id": r.id,
                "prerequisites": list(r.prerequisites),
                "criteria": r.criteria,
                "category": r.category,
                "satisfied": None if judgment.verdicts[r.id].verdict == "error" else judgment.verdicts[r.id].satisfied,
                **({"check": r.check} if r.check else {}),
            }
            for r in task.requirements
        ],
        "preferences": [{"preference_id": i, "criteria": p, "satisfied": None} for i, p in enumerate(task.preferences)],
    }


def save_judgment(judgment: TaskJudgment, db_url: str | None = None, report_dir: Path | None = None) -> SavedReport:
    """Store ``judgment`` with its Markdown and HTML reports; returns the run id and the report paths."""
    report_dir = report_dir or get_settings().artifact_dir / "judge"
    markdown = render_markdown(judgment)
    page = render_html(markdown, f"Judge report: {judgment.task.name}")
    counts = {
        label: sum(v.verdict == label for v in judgment.verdicts.values())
        for label in ("satisfied", "unsatisfied", "error")
    }
    with session_scope(db_url) as session:
        run = JudgeRun(
            kind=judgment.kind,
            task_name=judgment.task.name,
            subject=judgment.subject,
            search_id=judgment.search_id,
            mode=judgment.mode,
            model=judgment.model,
            requirement_set=task_as_devai(judgment),
            n_satisfied=counts["satisfied"],
            n_unsatisfied=counts["unsatisfied"],
            n_error=counts["error"],
            metrics=judgment_metrics(judgment),
            prompt_tokens=judgment.prompt_tokens,
            completion_tokens=judgment.completion_tokens,
            cost_usd=judgment.cost_usd,
            elapsed_s=judgment.elapsed_s,
            report_markdown=markdown,
            report_html=page,
        )
        run.verdicts = [
            JudgeVerdict(
                requirement_id=v.requirement_id,
                criteria=v.criteria,
                prerequisites=list(judgment.task.requirement(v.requirement_id).prerequisites),
                verdict=v.verdict,
                decided_by=v.decided_by,
                justification=v.justification,
                evidence=[dataclasses.asdict(e) for e in v.evidence],
                human_satisfied=None if judgment.human is None else judgment.human[v.requirement_id],
                llm_calls=v.llm_calls,
                prompt_tokens=v.prompt_tokens,
                completion_tokens=v.completion_tokens,
                cost_usd=v.cost_usd,
                elapsed_s=v.elapsed_s,
            )
            for v in judgment.verdicts.values()
        ]
        session.add(run)
        session.flush()
        stem = f"judge-{run.id}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', judgment.task.name)[:80]}"
        report_dir.mkdir(parents=True, exist_ok=True)
        markdown_path = report_dir / f"{stem}.md"
        html_path = report_dir / f"{stem}.html"
        markdown_path.write_text(markdown, encoding="utf-8")
        html_path.write_text(page, encoding="utf-8")
        run.report_path = str(markdown_path)
        return SavedReport(run.id, markdown_path, html_path)
