"""Judge reports: one Markdown document per judgment, rendered to HTML with markdown-it-py.

Writing Markdown once and rendering it keeps the two formats identical in content. Raw HTML is
disabled in the renderer and every excerpt sits in a code fence longer than any backtick run inside
it, so workspace text shows up as text in both formats and cannot inject markup or scripts.
"""

from __future__ import annotations

import html
import math
import re

from markdown_it import MarkdownIt

from agents.judge.agent import TaskJudgment
from agents.judge.metrics import alignment, devai_metrics
from agents.judge.verdict import Evidence

_MARK = {"satisfied": "✅ satisfied", "unsatisfied": "❌ unsatisfied", "error": "⚠️ error"}
_MODE_TEXT = {
    "offline": "offline: deterministic evidence checks, no LLM used",
    "llm": "LLM",
}


def judgment_metrics(judgment: TaskJudgment) -> dict[str, float | int | None]:
    """I, D, solved, and alignment with human labels when present (NaN becomes None for JSON)."""
    labels = {rid: (None if v.verdict == "error" else v.satisfied) for rid, v in judgment.verdicts.items()}
    task_metrics = devai_metrics([judgment.task], [labels])
    result: dict[str, float | int | None] = {
        "I": task_metrics.independent,
        "D": task_metrics.dependent,
        "solved": task_metrics.solve_rate,
        "undecided": task_metrics.n_undecided,
    }
    if judgment.human is not None:
        human_metrics = devai_metrics([judgment.task], [judgment.human])
        ids = sorted(judgment.verdicts)
        aligned = alignment([labels[i] for i in ids], [judgment.human[i] for i in ids])
        result |= {
            "human_I": human_metrics.independent,
            "human_D": human_metrics.dependent,
            "human_solved": human_metrics.solve_rate,
            "agreement": aligned.agreement,
            "kappa": aligned.kappa,
            "precision": aligned.precision,
            "recall": aligned.recall,
            "n_compared": aligned.n_compared,
        }
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _solved(value: float | int | None) -> str:
    return "undetermined (some verdicts are errors)" if value is None else ("yes" if value else "no")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def _evidence_line(e: Evidence) -> str:
    if e.path == "trajectory":
        where = f"trajectory step {e.start_line}"
    else:
        where = f"`{e.path}` lines {e.start_line}–{e.end_line}" if e.quotes_file_lines else f"`{e.path}`"
    note = f" ({e.note})" if e.note else ""
    excerpt = e.excerpt if len(e.excerpt) <= 1500 else e.excerpt[:1500] + "\n… (excerpt shortened)"
    return f"- {where}{note}\n\n{_fence(excerpt)}\n" if excerpt.strip() else f"- {where}{note}\n"


def render_markdown(judgment: TaskJudgment) -> str:
    """The report: summary, metrics, prerequisite graph, and each verdict with its evidence."""
    verdicts = judgment.verdicts.values()
    counts = {label: sum(v.verdict == label for v in verdicts) for label in ("satisfied", "unsatisfied", "error")}
    deciders = {d: sum(v.decided_by == d for v in verdicts) for d in ("tool", "llm", "offline", "skipped")}
    metrics = judgment_metrics(judgment)
    mode = _MODE_TEXT[judgment.mode] + (f" (model `{judgment.model}`)" if judgment.model else "")
    if judgment.mode == "offline":
        cost = "none (offline mode)"
    elif judgment.cost_usd is None:
        cost = "unknown (litellm has no price for this model)"
    else:
        cost = f"${judgment.cost_usd:.4f}"
    lines = [
        f"# Judge report: {_cell(judgment.task.name)}",
        "",
        f"- **Mode:** {mode}",
        f"- **Subject:** {_cell(judgment.subject)} ({judgment.kind})",
        f"- **Requirements:** {len(judgment.verdicts)} — {counts['satisfied']} satisfied, "
        f"{counts['unsatisfied']} unsatisfied, {counts['error']} error",
        "- **Decided by:** " + ", ".join(f"{k} {v}" for k, v in deciders.items() if v),
        f"- **Time:** {judgment.elapsed_s:.2f} s",
        f"- **LLM tokens:** {judgment.prompt_tokens} prompt, {judgment.completion_tokens} completion; **cost:** {cost}",
        f"- **I:** {_fmt(metrics['I'])} · **D:** {_fmt(metrics['D'])} · **task solved:** {_solved(metrics['solved'])}",
    ]
    lines += [f"- **Task warning:** {_cell(w)}" for w in judgment.task.warnings]
    if judgment.human is not None:
        lines.append(
            f"- **Human labels:** I {_fmt(metrics['human_I'])} · D {_fmt(metrics['human_D'])}; judge–human "
            f"agreement {_fmt(metrics['agreement'])}, kappa {_fmt(metrics['kappa'])}, precision "
            f"{_fmt(metrics['precision'])}, recall {_fmt(metrics['recall'])} over {metrics['n_compared']} "
            "requirements (errors left out)"
        )
    lines += ["", "## Requirements", "", "| R | verdict | decided by | prerequisites | human | criteria |"]
    lines.append("|---|---|---|---|---|---|")
    for v in verdicts:
        prerequisites = ", ".join(f"R{p}" for p in judgment.task.requirement(v.requirement_id).prerequisites) or "—"
        human = "—" if judgment.human is None else ("satisfied" if judgment.human[v.requirement_id] else "unsatisfied")
        lines.append(
            f"| R{v.requirement_id} | {_MARK[v.verdict]} | {v.decided_by} | {prerequisites} | {human} | "
            f"{_cell(v.criteria)} |"
        )
    lines += ["", "## Prerequisite graph", "", "```mermaid", "graph TD"]
    for v in verdicts:
        lines.append(f'  R{v.requirement_id}["R{v.requirement_id}: {v.verdict}"]')
        for p in judgment.task.requirement(v.requirement_id).prerequisites:
            lines.append(f"  R{p} --> R{v.requirement_id}")
    lines += ["```", "", "## Verdicts and evidence", ""]
    for v in verdicts:
        cost = "n/a" if v.cost_usd is None else f"${v.cost_usd:.4f}"
        lines += [
            f"### R{v.requirement_id} — {_MARK[v.verdict]} (decided by {v.decided_by})",
            "",
            f"**Criterion:** {_cell(v.criteria)}",
            "",
            f"**Justification:** {_cell(v.justification)}",
            "",
            f"*{v.elapsed_s:.2f} s, {v.llm_calls} LLM call(s), {v.prompt_tokens}+{v.completion_tokens} tokens, "
            f"cost {cost}*",
            "",
        ]
        if v.evidence:
            lines += ["**Evidence:**", ""] + [_evidence_line(e) for e in v.evidence]
        else:
            lines += ["**Evidence:** none cited.", ""]
    return "\n".join(lines) + "\n"


def render_html(markdown: str, title: str) -> str:
    """A standalone HTML page of the Markdown report (raw HTML in the Markdown is not passed through)."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;vertical-align:top}"
        "pre{background:#f6f8fa;padding:.5rem;overflow-x:auto}</style></head>\n"
        f"<body>\n{body}</body></html>\n"
    )
