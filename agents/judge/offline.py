"""Deterministic, evidence-based verdicts for when no LLM is configured.

The rules only decide what can be checked mechanically: every file or folder the criterion names
exists, named artifacts are well-formed (JSON/CSV parse, images decode, Python parses, nothing empty),
and every term the criterion quotes ("Fashion-MNIST", `torchvision.transforms`) appears in the named
files (or anywhere, when no file is named). A criterion that names nothing checkable gets an ``error``
verdict ("cannot decide offline"), never a guess. Every verdict says it came from offline mode.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re

from agents.judge.retrieval import files_named, named_paths, quoted_terms
from agents.judge.verdict import Evidence, VerdictLabel
from agents.judge.workspace import AccessRefused, Workspace

OFFLINE_NOTE = "[offline mode: deterministic checks, no LLM]"
# Names that DevAI criteria use for libraries whose import name differs (the check looks for either).
IMPORT_NAMES = {"pytorch": "torch", "scikitlearn": "sklearn", "opencv": "cv2", "pillow": "pil"}
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def _normalise(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


def offline_verdict(criteria: str, workspace: Workspace) -> tuple[VerdictLabel, str, list[Evidence]]:
    """Verdict, justification (prefixed with the mode) and evidence from mechanical checks alone."""
    paths = named_paths(criteria)
    terms = quoted_terms(criteria)
    if not paths and not terms:
        return "error", f"{OFFLINE_NOTE} Cannot decide offline: the criterion names no file, folder or term.", []
    problems: list[str] = []
    evidence: list[Evidence] = []
    targets: list[str] = []
    for name in paths:
        matches = files_named(workspace, name)
        if not matches and not workspace.is_dir(name.strip("/")):
            problems.append(f"`{name}` does not exist")
            continue
        evidence.append(Evidence(name, 0, 0, _listing(matches), note="exists"))
        for relative in matches:
            problem = _malformed(workspace, relative)
            if problem:
                problems.append(f"`{relative}` {problem}")
        targets.extend(matches)
    searched = targets if paths else [f for f, node in workspace.graph().items() if not node.binary]
    for term in terms:
        found = _find_term(workspace, term, searched)
        if found is None:
            where = "the named files" if paths else "any text file"
            problems.append(f'"{term}" is not mentioned in {where}')
        else:
            evidence.append(found)
    verdict: VerdictLabel = "unsatisfied" if problems else "satisfied"
    checked = f"{len(paths)} named path(s), {len(terms)} quoted term(s)"
    reason = "; ".join(problems) if problems else f"all checks passed ({checked})"
    return verdict, f"{OFFLINE_NOTE} {reason}.", evidence


def _listing(files: list[str]) -> str:
    return "\n".join(files[:20]) + (f"\n... {len(files) - 20} more" if len(files) > 20 else "")


def _malformed(workspace: Workspace, relative: str) -> str | None:
    """Why a named file is not a well-formed artifact of its type, or None when it is."""
    try:
        data = workspace.read_bytes(relative)
    except AccessRefused as exc:
        return f"cannot be read ({exc})"
    if not data:
        return "is empty"
    suffix = relative.rsplit(".", 1)[-1].lower() if "." in relative else ""
    view = workspace.view(relative)
    if suffix == "json":
        try:
            json.loads(data.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return f"is not valid JSON ({exc})"
    elif suffix == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8", errors="replace"))))
        if len(rows) < 2:
            return "has no data rows"
    elif suffix == "py":
        try:
            ast.parse(data.decode("utf-8", errors="replace"))
        except SyntaxError as exc:
            return f"does not parse as Python (line {exc.lineno})"
    elif view.kind in ("image", "pdf") and view.text.startswith(("not a readable", "unreadable")):
        return view.text
    return None


def _find_term(workspace: Workspace, term: str, files: list[str]) -> Evidence | None:
    """The first line (in ``files``) that mentions ``term``; dotted terms may have their parts anywhere."""
    wanted = _normalise(term)
    alternatives = {wanted, IMPORT_NAMES.get(wanted, wanted)}
    parts = [_normalise(p) for p in term.split(".")] if "." in term else []
    for relative in files:
        view = workspace.view(relative, max_lines=5000)
        if view.kind not in ("text", "csv", "json", "pdf"):
            continue
        lines = view.text.splitlines()
        hit = next((i for i, line in enumerate(lines) if any(a and a in _normalise(line) for a in alternatives)), None)
        if hit is None and parts and all(any(p in _normalise(line) for line in lines) for p in parts):
            hit = next(i for i, line in enumerate(lines) if parts[0] in _normalise(line))
        if hit is not None:
            number = hit + view.start_line if view.kind == "text" else 0  # other views are not line-addressed
            return Evidence(relative, number, number, lines[hit].strip()[:300], note=f"mentions {term}")
    return None
