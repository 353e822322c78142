"""DevAI tasks and human labels: loading, validation and the prerequisite DAG.

A DevAI task (``../shared/devai/instances/*.json``) has a query, requirements with ids and
prerequisite ids, and preferences. Human labels use the same file format with each requirement's
``satisfied`` set to true or false. hilnas's own requirement sets use this format too, with an optional
``check`` key per requirement naming the tool that decides it (DevAI readers ignore unknown keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from hilnas.errors import UserError


@dataclass(frozen=True)
class Requirement:
    id: int
    criteria: str
    prerequisites: tuple[int, ...]
    category: str = ""
    check: str | None = None  # a tool check (pipeline requirement sets); None: judged from evidence


@dataclass(frozen=True)
class DevAITask:
    name: str
    query: str
    requirements: tuple[Requirement, ...]
    preferences: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # data problems the loader repaired (reports show them)

    def requirement(self, requirement_id: int) -> Requirement:
        return next(r for r in self.requirements if r.id == requirement_id)

    def order(self) -> list[int]:
        """Requirement ids with every prerequisite before the requirements that need it."""
        return list(TopologicalSorter({r.id: r.prerequisites for r in self.requirements}).static_order())


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"The {what} file {path} does not exist.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"The {what} file {path} is not valid JSON: {exc}.") from exc


def load_task(path: Path | str, *, strict: bool = False) -> DevAITask:
    """Read one task file and validate it (see ``parse_task``)."""
    path = Path(path)
    return parse_task(_read_json(path, "task"), source=str(path), strict=strict)


def parse_task(data: Any, source: str = "<task>", *, strict: bool = False) -> DevAITask:
    """A validated task: unique integer ids, known prerequisites, prerequisites forming a DAG.

    A requirement listing itself as a prerequisite is an error with ``strict``; otherwise the
    self-reference is dropped and reported in ``warnings`` (the published DevAI task 45 has two).
    Unknown prerequisites and cycles between different requirements are always errors.
    """
    if not isinstance(data, dict) or not isinstance(data.get("requirements"), list):
        raise UserError(f"{source} is not a DevAI task: it needs a 'requirements' list.")
    name = str(data.get("name") or Path(source).stem)
    requirements: list[Requirement] = []
    for position, raw in enumerate(data["requirements"]):
        if not isinstance(raw, dict):
            raise UserError(f"{source}: requirement #{position} is not an object.")
        rid = raw.get("requirement_id")
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise UserError(f"{source}: requirement #{position} has no integer 'requirement_id'.")
        criteria = raw.get("criteria")
        if not isinstance(criteria, str) or not criteria.strip():
            raise UserError(f"{source}: requirement {rid} has no 'criteria' text.")
        prerequisites = raw.get("prerequisites") or []
        if not isinstance(prerequisites, list) or not all(isinstance(p, int) for p in prerequisites):
            raise UserError(f"{source}: requirement {rid} has 'prerequisites' that are not a list of ids.")
        requirements.append(
            Requirement(rid, criteria, tuple(prerequisites), str(raw.get("category") or ""), raw.get("check"))
        )
    requirements, warnings = _drop_self_prerequisites(requirements, source, strict)
    _validate_graph(requirements, source)
    known = {"name", "query", "requirements", "preferences", "tags"}
    return DevAITask(
        name=name,
        query=str(data.get("query") or ""),
        requirements=tuple(requirements),
        preferences=tuple(str(p.get("criteria", "")) for p in data.get("preferences") or [] if isinstance(p, dict)),
        tags=tuple(data.get("tags") or ()),
        source=source,
        extra={k: v for k, v in data.items() if k not in known},
        warnings=tuple(warnings),
    )


def _drop_self_prerequisites(
    requirements: list[Requirement], source: str, strict: bool
) -> tuple[list[Requirement], list[str]]:
    repaired: list[Requirement] = []
    warnings: list[str] = []
    for r in requirements:
        if r.id in r.prerequisites:
            message = f"{source}: requirement {r.id} lists itself as a prerequisite"
            if strict:
                raise UserError(message + ".")
            warnings.append(message + "; the self-reference is ignored.")
            r = Requirement(r.id, r.criteria, tuple(p for p in r.prerequisites if p != r.id), r.category, r.check)
        repaired.append(r)
    return repaired, warnings


def _validate_graph(requirements: list[Requirement], source: str) -> None:
    ids = [r.id for r in requirements]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UserError(f"{source}: requirement ids {duplicates} appear more than once.")
    for r in requirements:
        unknown = sorted(set(r.prerequisites) - set(ids))
        if unknown:
            raise UserError(f"{source}: requirement {r.id} has prerequisites {unknown} that are not requirements.")
    try:
        TopologicalSorter({r.id: r.prerequisites for r in requirements}).prepare()
    except CycleError as exc:
        cycle = " -> ".join(str(i) for i in exc.args[1])
        raise UserError(f"{source}: the prerequisites form a cycle ({cycle}).") from exc


def load_tasks(directory: Path | str) -> list[DevAITask]:
    """Every ``*.json`` task in a directory, sorted by file name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"The task directory {directory} does not exist.")
    return [load_task(p) for p in sorted(directory.glob("*.json"))]


def load_human_labels(path: Path | str, task: DevAITask) -> dict[int, bool]:
    """Human verdicts (requirement id -> satisfied) from a labelled copy of ``task`` in DevAI's format."""
    path = Path(path)
    data = _read_json(path, "human label")
    if not isinstance(data, dict) or not isinstance(data.get("requirements"), list):
        raise UserError(f"{path} is not a labelled DevAI task: it needs a 'requirements' list.")
    labels: dict[int, bool] = {}
    for raw in data["requirements"]:
        rid = raw.get("requirement_id") if isinstance(raw, dict) else None
        if not isinstance(rid, int):
            raise UserError(f"{path}: a requirement has no integer 'requirement_id'.")
        value = raw.get("satisfied")
        if not isinstance(value, bool):
            raise UserError(f"{path}: requirement {rid} has no true/false 'satisfied' label.")
        labels[rid] = value
    expected = {r.id for r in task.requirements}
    if set(labels) != expected:
        raise UserError(
            f"{path}: labels cover requirements {sorted(labels)}, but task {task.name} has {sorted(expected)}."
        )
    return labels
