"""Collecting the evidence for one requirement: located files, code-search hits, trajectory steps.

The collector follows the Agent-as-a-Judge steps (locate, read, search, retrieve) and keeps the total
quoted text under a character budget so that a prompt's size does not depend on the workspace's size.
"""

from __future__ import annotations

from agents.judge.retrieval import CodeIndex, Trajectory, files_named, locate, named_paths
from agents.judge.verdict import Evidence
from agents.judge.workspace import Workspace


class EvidenceCollector:
    """Evidence for requirements of one workspace (the code index is built once and reused)."""

    def __init__(
        self,
        workspace: Workspace,
        trajectory: Trajectory | None = None,
        *,
        max_chars: int = 24_000,
        max_files: int = 4,
        lines_per_file: int = 150,
    ) -> None:
        self.workspace = workspace
        self.trajectory = trajectory
        self.index = CodeIndex(workspace)
        self.max_chars = max_chars
        self.max_files = max_files
        self.lines_per_file = lines_per_file

    def collect(self, criteria: str) -> list[Evidence]:
        """Missing named paths, located files and search hits, then trajectory steps, each within budget."""
        items: list[Evidence] = [
            Evidence(name, 0, 0, "", note="named in the requirement; absent from the workspace")
            for name in named_paths(criteria)
            if not files_named(self.workspace, name) and not self.workspace.is_dir(name.strip("/"))
        ]
        for relative in locate(self.workspace, criteria, self.index)[: self.max_files]:
            items.extend(self._read(relative, criteria))
        for hit in self.index.search(criteria, k=3):
            if not any(e.path == hit.path for e in items):
                view = self.workspace.view(hit.path, around=(hit.start_line, hit.end_line))
                items.append(Evidence(hit.path, view.start_line, view.end_line, view.text, note="code search hit"))
        if self.trajectory is None:
            return _within_budget(items, self.max_chars)
        # A quarter of the budget is kept for the trajectory so that large files cannot crowd it out.
        steps = [
            Evidence("trajectory", hit.start_line, hit.end_line, self.trajectory.step_text(hit.start_line), "step")
            for hit in self.trajectory.retrieve(criteria, k=3)
        ]
        reserve = self.max_chars // 4
        return _within_budget(items, self.max_chars - reserve) + _within_budget(steps, reserve)

    def _read(self, relative: str, criteria: str) -> list[Evidence]:
        view = self.workspace.view(relative, max_lines=self.lines_per_file)
        if view.kind != "text":
            return [Evidence(relative, 0, 0, view.text, note=f"{view.kind} file")]
        if not view.truncated:
            return [Evidence(relative, view.start_line, view.end_line, view.text, note="file")]
        # A long file: its head, plus the windows of it that match the requirement best.
        items = [Evidence(relative, view.start_line, min(view.end_line, 40), _head(view.text, 40), note="file head")]
        for hit in self.index.search(criteria, k=20):
            if hit.path == relative and len(items) < 3:
                window = self.workspace.view(relative, around=(hit.start_line, hit.end_line))
                items.append(Evidence(relative, window.start_line, window.end_line, window.text, note="matching part"))
        return items


def _within_budget(items: list[Evidence], budget: int) -> list[Evidence]:
    """The items in order until ``budget`` characters of excerpt are used; the last one may be cut."""
    kept: list[Evidence] = []
    used = 0
    for e in items:
        room = budget - used
        if room <= 200 and e.excerpt:
            break
        if len(e.excerpt) > room:
            lines = e.excerpt[:room].splitlines()[:-1] or [e.excerpt[:room]]
            end = e.start_line + len(lines) - 1 if e.start_line else 0
            e = Evidence(e.path, e.start_line, end, "\n".join(lines), e.note + " (cut)")
        kept.append(e)
        used += len(e.excerpt)
    return kept


def _head(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[:n])
