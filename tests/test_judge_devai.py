"""DevAI loading and validation (on the real ../shared/devai tasks), human labels, I/D/solve and alignment."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agents.judge.devai import load_human_labels, load_task, load_tasks, parse_task
from agents.judge.metrics import alignment, devai_metrics
from hilnas.errors import UserError


def _task(requirements: list[tuple[int, list[int]]], name: str = "t") -> dict:
    return {
        "name": name,
        "query": "q",
        "requirements": [
            {"requirement_id": rid, "prerequisites": pre, "criteria": f"criterion {rid}", "satisfied": None}
            for rid, pre in requirements
        ],
    }


def test_the_published_devai_tasks_load_with_their_dag(shared_dir: Path) -> None:
    tasks = load_tasks(shared_dir / "devai" / "instances")
    assert len(tasks) == 55
    assert sum(len(t.requirements) for t in tasks) == 365
    assert sum(len(t.preferences) for t in tasks) == 125
    for task in tasks:
        order = task.order()
        assert sorted(order) == sorted(r.id for r in task.requirements)
        position = {rid: i for i, rid in enumerate(order)}
        assert all(position[p] < position[r.id] for r in task.requirements for p in r.prerequisites)


def test_the_self_prerequisites_in_devai_task_45_are_reported(shared_dir: Path) -> None:
    path = next((shared_dir / "devai" / "instances").glob("45_*.json"))
    task = load_task(path)
    assert len(task.warnings) == 2
    assert "requirement 3 lists itself as a prerequisite" in task.warnings[0]
    assert all(r.id not in r.prerequisites for r in task.requirements)
    with pytest.raises(UserError, match="requirement 3 lists itself as a prerequisite"):
        load_task(path, strict=True)


def test_a_cycle_is_reported_with_its_path() -> None:
    with pytest.raises(UserError, match=r"cycle \((\d -> ){2,3}\d\)"):
        parse_task(_task([(0, [2]), (1, [0]), (2, [1])]))


@pytest.mark.parametrize(
    ("requirements", "message"),
    [
        ([(0, []), (0, [])], "appear more than once"),
        ([(0, [5])], r"prerequisites \[5\] that are not requirements"),
    ],
)
def test_bad_ids_are_user_errors(requirements: list, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_task(_task(requirements))


def test_a_file_that_is_not_json_is_one_clear_sentence(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="is not valid JSON"):
        load_task(path)


def test_human_labels_in_devai_format(tmp_path: Path) -> None:
    task = parse_task(_task([(0, []), (1, [0])]))
    labelled = _task([(0, []), (1, [0])])
    labelled["requirements"][0]["satisfied"] = True
    labelled["requirements"][1]["satisfied"] = False
    path = tmp_path / "human.json"
    path.write_text(json.dumps(labelled))
    assert load_human_labels(path, task) == {0: True, 1: False}
    labelled["requirements"][1]["satisfied"] = None
    path.write_text(json.dumps(labelled))
    with pytest.raises(UserError, match="requirement 1 has no true/false"):
        load_human_labels(path, task)


def test_i_d_and_solve_rate_by_hand() -> None:
    chain = parse_task(_task([(0, []), (1, [0]), (2, [0, 1])], "chain"))
    flat = parse_task(_task([(0, []), (1, [])], "flat"))
    metrics = devai_metrics([chain, flat], [{0: True, 1: False, 2: True}, {0: True, 1: True}])
    assert metrics.independent == pytest.approx(4 / 5)
    # D: chain R0 yes, R1 no, R2 no (its prerequisite R1 failed); flat R0, R1 yes.
    assert metrics.dependent == pytest.approx(3 / 5)
    assert metrics.solve_rate == pytest.approx(1 / 2)


def test_undecided_verdicts_are_left_out_not_counted_as_unsatisfied() -> None:
    chain = parse_task(_task([(0, []), (1, [0]), (2, [0, 1])]))
    metrics = devai_metrics([chain], [{0: True, 1: None, 2: True}])
    assert metrics.independent == 1.0 and metrics.n_undecided == 1
    assert metrics.dependent == 1.0  # only R0 has itself and its prerequisites decided
    assert math.isnan(metrics.solve_rate)


def test_alignment_by_hand() -> None:
    judge = [True, True, True, False, False, None]
    human = [True, True, False, False, False, True]
    result = alignment(judge, human)
    assert result.n_compared == 5 and result.n_undecided == 1
    assert result.agreement == pytest.approx(0.8)
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == pytest.approx(1.0)
    # po = 0.8; pe = 0.6*0.4 + 0.4*0.6 = 0.48; kappa = (0.8 - 0.48) / (1 - 0.48)
    assert result.kappa == pytest.approx(0.32 / 0.52)
    assert math.isnan(alignment([True, True], [True, True]).kappa)
